"""How ``wsops drain`` judges a drain (pure): its options, how long to wait, the exit code.

The node does the draining (``wsops.instrumentation.drainer.Drainer``); the command starts it,
follows ``GET /admin/drain`` and turns the final status into an exit code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1  # unreachable node, refused token, bad answer, drain cancelled meanwhile
EXIT_USAGE: Final = 2  # bad options (the CLI's own convention for usage errors)
EXIT_TIMEOUT: Final = 4  # connections were still open at the deadline
GRACE_SECONDS: Final = 3.0
"""How long past the drain deadline the command keeps waiting for the node to report."""


def sendable_close_code(code: int) -> bool:
    """A code an endpoint may put in a close frame (RFC 6455 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


@dataclass(frozen=True)
class DrainOptions:
    """What ``POST /admin/drain`` gets; None leaves the node's own setting."""

    batch: int | None = None
    interval: float | None = None
    deadline: float | None = None
    code: int | None = None
    spread: float | None = None

    def problems(self) -> list[tuple[str, str]]:
        """(option, what is wrong) for each bad value; empty when all are fine."""
        out: list[tuple[str, str]] = []
        if self.batch is not None and self.batch < 1:
            out.append(("--batch", "must be >= 1 (connections closed per batch)"))
        if self.interval is not None and not 0 <= self.interval <= 3600:
            out.append(("--interval", "must be between 0 and 3600 seconds"))
        if self.deadline is not None and not 0 < self.deadline <= 86400:
            out.append(("--deadline", "must be > 0 and at most 86400 seconds"))
        if self.spread is not None and not 0 <= self.spread <= 60:
            out.append(("--spread", "must be between 0 and 60 seconds"))
        if self.code is not None and not sendable_close_code(self.code):
            out.append(("--code", "must be a close code a server may send: 1000-1003, "
                                  "1007-1014 or 3000-4999 (1012 = service restart)"))
        return out

    def body(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    result: str  # drained | timeout | cancelled | error
    message: str


def without_log(status: Mapping[str, Any]) -> dict[str, Any]:
    """A ``GET /admin/drain`` answer without its log of closes and clock (``closes``,
    ``now``): the figures a command's JSON keeps of it."""
    return {k: v for k, v in status.items() if k not in ("closes", "now")}


def progress(status: Mapping[str, Any]) -> tuple[int, int]:
    """(total, left) for the progress bar: connections at the start, connections still open."""
    left = int(status.get("remaining") or 0)
    return max(int(status.get("total") or 0), left), left


def judge(status: Mapping[str, Any], *, gave_up: bool, elapsed: float) -> Outcome:
    """The exit code of a drain whose last status is ``status``.

    0: the node reports ``drained`` with nothing forced and nothing left. 4: connections
    remained at the deadline: the node force-closed some (``forced`` > 0), or some were still
    open ``GRACE_SECONDS`` after it reported drained, or it still reported draining
    ``GRACE_SECONDS`` past the deadline.
    1: the drain was cancelled meanwhile, or the node reports a state it should not.
    """
    state = status.get("state")
    total, left = progress(status)
    forced = int(status.get("forced") or 0)
    closed = int(status.get("closed") or 0)
    batches = int(status.get("batches") or 0)
    if state == "drained":
        if forced == 0 and left == 0:
            return Outcome(EXIT_OK, "drained", (
                f"drained {total} connection{'s' if total != 1 else ''} in {elapsed:.1f} s "
                f"({batches} batch{'es' if batches != 1 else ''}, {closed} closed, 0 forced)"))
        if forced == 0:
            return Outcome(EXIT_TIMEOUT, "timeout", (
                f"the node finished draining but {left} of {total} connections were still "
                f"open {GRACE_SECONDS:g} s later"))
        return Outcome(EXIT_TIMEOUT, "timeout", (
            f"deadline reached: {forced} of {total} connections were still open and were "
            f"force-closed by the node{f', {left} still open' if left else ''} "
            f"({closed} closed gracefully in {batches} batches)"))
    if state == "cancelled":
        return Outcome(EXIT_ERROR, "cancelled", (
            f"the drain was cancelled meanwhile (wsops drain --cancel?) with {left} "
            f"connections left; the node accepts connections again"))
    if gave_up and state == "draining":
        return Outcome(EXIT_TIMEOUT, "timeout", (
            f"still draining {GRACE_SECONDS:g} s past the deadline: {left} of {total} "
            "connections left"))
    return Outcome(EXIT_ERROR, "error", f"unexpected drain state {state!r}")


TIMELINE_POINTS: Final = 2000
"""Polls kept per series of a drain's timeline: past it, every other one is dropped (a day-long
deadline polled 5 times a second stays bounded)."""


def _thin(series: list[Any]) -> None:
    if len(series) > TIMELINE_POINTS:
        del series[1:-1:2]


@dataclass
class DrainTimeline:
    """What ``wsops drain --report`` charts, as the command saw it (seconds from the drain's
    start): the node's status at each poll, its readiness, and its peers' connections."""

    points: list[dict[str, Any]] = field(default_factory=list)
    peers: dict[str, list[tuple[float, int | None]]] = field(default_factory=dict)
    closes: list[tuple[int, int, float]] = field(default_factory=list)  # batches, closed, t
    node_closes: list[dict[str, Any]] | None = None  # the node's own log (``node_log``)

    def status(self, t: float, status: Mapping[str, Any], ready: bool | None) -> None:
        total, left = progress(status)
        batches, closed = int(status.get("batches") or 0), int(status.get("closed") or 0)
        if not self.closes or batches != self.closes[-1][0]:  # (kept whole: batch boundaries)
            self.closes.append((batches, closed, round(t, 3)))
        self.points.append({
            "t": round(t, 3), "state": status.get("state"), "total": total, "remaining": left,
            "closed": closed, "forced": int(status.get("forced") or 0), "batches": batches,
            "ready": ready})
        _thin(self.points)

    def peer(self, t: float, url: str, connections: int | None) -> None:
        """``connections`` of the peer at ``url`` (None: it did not answer)."""
        seen = self.peers.setdefault(url, [])
        seen.append((round(t, 3), connections))
        _thin(seen)

    def node_log(self, status: Mapping[str, Any], received: float) -> None:
        """The node's log of closes (``GET /admin/drain``'s ``closes``, seconds from its
        ``started_at``), placed on this timeline by ``received``, the time on it that
        ``status`` arrived at: the node answered ``now - started_at`` into its drain then (no
        clocks compared: the node may be another host). A node that sent no log (an older
        wsops) or a broken one leaves the batches to the polls (``batches``)."""
        closes, began, now = status.get("closes"), status.get("started_at"), status.get("now")
        if not isinstance(closes, list) or not isinstance(began, int | float) \
                or not isinstance(now, int | float):
            return
        offset, done, placed = received - (float(now) - float(began)), 0, []
        try:
            for entry in closes:
                n = int(entry["batches"])
                batch = {"batch": done + 1, "t": round(offset + float(entry["t"]), 3),
                         "sent": int(entry["sent"])}
                if n != 1:  # neighbouring batches grouped (a log past 1,000 entries)
                    batch["batches"] = n
                placed.append(batch)
                done += n
        except (KeyError, TypeError, ValueError):
            return
        self.node_closes = placed

    def batches(self, following: bool = False) -> list[dict[str, Any]]:
        """Closes sent per batch: the node's own log when it sent one (batches before this
        command started at negative times), else from the polls: when ``batches`` grew by k
        between two polls, the closes sent meanwhile are shared out over those k batches, and
        ``following`` a drain that was already running, its batches before the first poll are
        not placed (they did not happen at 0)."""
        if self.node_closes is not None:
            return self.node_closes
        out: list[dict[str, Any]] = []
        polls = list(self.closes)
        done, closed_before = (polls.pop(0)[:2] if following and polls else (0, 0))
        for batches, closed, t in polls:
            new = batches - done
            if new > 0:
                closed_now = max(0, closed - closed_before)
                for k in range(new):
                    share = closed_now // new + (1 if k < closed_now % new else 0)
                    out.append({"batch": done + k + 1, "t": t, "sent": share})
                done, closed_before = batches, closed
        return out

    def as_dict(self, following: bool = False) -> dict[str, Any]:
        return {"timeline": self.points, "batches": self.batches(following),
                "batches_from": "node" if self.node_closes is not None else "polls",
                "peers": [{"url": url, "t": [t for t, _ in seen],
                           "connections": [n for _, n in seen]}
                          for url, seen in self.peers.items()]}
