"""What a node watches: users, rooms or connections under its debug switch (``wsops debug``),
each for a bounded time, and those an open tap streams (``wsops tap``). Pure bookkeeping; the
asyncio layer (``wsops.server.debug``) logs, traces and streams.

A target is named by what it watches (``user:alice``, ``room:chat:1``, ``connection:42``), so
asking again for the same one extends it rather than adding a second, and a ``--workers`` node
gives every worker the same name. At most ``MAX_TARGETS`` at once, each for at most
``MAX_SECONDS``: a debug switch left on by mistake turns itself off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

KINDS: Final = ("user", "room", "connection")
MAX_TARGETS: Final = 16
MAX_SECONDS: Final = 3600.0
DEFAULT_SECONDS: Final = 600.0


class TargetRefused(ValueError):
    """A target that cannot be added: the message says why (HTTP 400 or 409)."""

    def __init__(self, message: str, full: bool = False) -> None:
        super().__init__(message)
        self.full = full  # MAX_TARGETS reached (409), else a bad target (400)


@dataclass(frozen=True, slots=True)
class Target:
    kind: str
    value: str
    until: float  # on the caller's monotonic clock
    started_at: float  # wall clock, for people

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.value}"


class DebugTargets:
    """The targets now on; ``active`` is the one attribute a frame's path reads."""

    def __init__(self) -> None:
        self.targets: dict[str, Target] = {}
        self.taps: dict[str, int] = {}  # kind:value -> open taps
        self.active = False  # anything watched at all (a debug target or a tap)
        self._users: set[str] = set()
        self._rooms: set[str] = set()
        self._conns: set[str] = set()
        self._debugged: tuple[set[str], set[str], set[str]] = (set(), set(), set())

    def add(self, kind: str, value: str, seconds: float, now: float, wall: float) -> Target:
        """Watch ``kind`` ``value`` for ``seconds`` from ``now`` (again: until then)."""
        if kind not in KINDS:
            raise TargetRefused(f"a debug target is one of {', '.join(KINDS)}, not {kind!r}")
        if not value or len(value) > 256:
            raise TargetRefused(f"a {kind} to debug is 1 to 256 characters")
        if not 0 < seconds <= MAX_SECONDS:
            raise TargetRefused(f"a debug switch lasts more than 0 and at most "
                                f"{MAX_SECONDS:g} seconds, not {seconds:g}")
        key = f"{kind}:{value}"
        if key not in self.targets and len(self.targets) >= MAX_TARGETS:
            raise TargetRefused(f"{MAX_TARGETS} debug targets are on already, the most a node "
                                "keeps: stop one first", full=True)
        target = self.targets[key] = Target(kind, value, now + seconds, wall)
        self._index()
        return target

    def remove(self, target_id: str) -> Target | None:
        target = self.targets.pop(target_id, None)
        self._index()
        return target

    def expire(self, now: float) -> list[Target]:
        """Drop the targets whose time is up; returns them."""
        gone = [t for t in self.targets.values() if t.until <= now]
        for t in gone:
            del self.targets[t.id]
        self._index()
        return gone

    def next_expiry(self) -> float | None:
        return min((t.until for t in self.targets.values()), default=None)

    def tap(self, kind: str, value: str) -> None:
        """A tap opened on ``kind`` ``value`` (taps are counted: several may watch one)."""
        if kind not in KINDS:
            raise TargetRefused(f"a tap watches one of {', '.join(KINDS)}, not {kind!r}")
        key = f"{kind}:{value}"
        self.taps[key] = self.taps.get(key, 0) + 1
        self._index()

    def untap(self, kind: str, value: str) -> None:
        key = f"{kind}:{value}"
        left = self.taps.pop(key, 0) - 1
        if left > 0:
            self.taps[key] = left
        self._index()

    def watches(self, user: str, conn_id: int, room: str | None = None) -> bool:
        """A frame of connection ``conn_id`` of ``user`` (about ``room``) is watched: by a debug
        target or by a tap."""
        return (user in self._users or str(conn_id) in self._conns
                or (room is not None and room in self._rooms))

    def debugs(self, user: str, conn_id: int, room: str | None = None) -> bool:
        """The same for debug targets only (logged, and traced whatever the ratio)."""
        users, rooms, conns = self._debugged
        return (user in users or str(conn_id) in conns
                or (room is not None and room in rooms))

    def _index(self) -> None:
        debugged: dict[str, set[str]] = {k: set() for k in KINDS}
        for t in self.targets.values():
            debugged[t.kind].add(t.value)
        watched = {k: set(v) for k, v in debugged.items()}
        for key in self.taps:
            kind, _, value = key.partition(":")
            watched[kind].add(value)
        self._debugged = (debugged["user"], debugged["room"], debugged["connection"])
        self._users, self._rooms, self._conns = (
            watched["user"], watched["room"], watched["connection"])
        self.active = bool(self.targets or self.taps)
