"""Graceful drain: stop taking connections, close open ones in spread-out batches, then stop.

Readiness fails at once so load balancers stop sending; new upgrades get HTTP 503; open
connections are closed with 1012 in shuffled batches with jittered gaps, so their reconnects
spread over other nodes, and each close asks its client to spread its reconnect over a window
of its own (``reconnect=MS`` in the close reason, which the wsops clients honour); whatever is
left at the deadline is closed at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal, Protocol

from wsops.admin.contract import CloseLog
from wsops.backoff import RECONNECT_HINT_CAP, hint_reason

log = logging.getLogger("wsops.drain")
SERVICE_RESTART = 1012
DEFAULT_SPREAD = 5.0
"""Seconds over which a drained client is asked to spread its reconnect (PROTOCOL.md): with
the batches' own spacing, the reconnects of a node's clients arrive over the drain plus this."""
DrainState = Literal["idle", "draining", "drained", "cancelled"]


class Closable(Protocol):
    """A connection the drainer can close: the bundled server's ``Conn`` or a ``LiveConn``."""

    @property
    def closing(self) -> bool: ...

    def close(self, code: int, reason: str = "") -> None: ...

    def abort(self) -> None: ...


@dataclass
class DrainStatus:
    """``closed``: closed gracefully in a batch; ``forced``: still open at the deadline and
    dropped (never both, so ``closed + forced`` is every connection drained)."""

    state: DrainState = "idle"
    started_at: float | None = None
    finished_at: float | None = None
    total: int = 0
    closed: int = 0
    forced: int = 0
    batches: int = 0
    closes: CloseLog = field(default_factory=CloseLog)  # sent, batch by batch


class Drainer:
    """Drains the connections returned by ``live()``; one drain at a time."""

    def __init__(
        self, live: Callable[[], Collection[Closable]], rng: random.Random | None = None
    ) -> None:
        self._live = live
        self._rng = rng or random.Random()
        self.status = DrainStatus()
        self._task: asyncio.Task[DrainStatus] | None = None
        self._began = 0.0

    @property
    def draining(self) -> bool:
        return self.status.state in ("draining", "drained")

    def start(
        self,
        batch: int = 100,
        interval: float = 0.5,
        deadline: float = 30.0,
        code: int = SERVICE_RESTART,
        spread: float = DEFAULT_SPREAD,
    ) -> asyncio.Task[DrainStatus]:
        """Begin draining (idempotent while a drain runs); returns the drain's task.
        ``spread``: seconds over which each closed client is asked to spread its reconnect
        (the reconnect hint of a 1012 close; 0 asks nothing)."""
        if self._task is not None and not self._task.done():
            return self._task
        if batch < 1 or interval < 0 or deadline <= 0 or not 0 <= spread <= RECONNECT_HINT_CAP:
            raise ValueError("drain needs batch >= 1, interval >= 0, deadline > 0 and a spread "
                             f"of 0-{RECONNECT_HINT_CAP:g} s")
        self.status = DrainStatus("draining", time.time())
        self._began = time.monotonic()  # the same moment: the log's times are from it
        log.info("drain started: %d connections open, closed %d at a time every ~%g s, "
                 "the rest dropped at the %g s deadline; new connections refused",
                 len(self._live()), batch, interval, deadline)
        reason = hint_reason("draining", spread) if code == SERVICE_RESTART else "draining"
        self._task = asyncio.create_task(self._run(batch, interval, deadline, code, reason))
        return self._task

    async def _run(self, batch: int, interval: float, deadline: float, code: int,
                   reason: str) -> DrainStatus:
        st = self.status
        end = time.monotonic() + deadline
        conns = [c for c in self._live() if not c.closing]
        self._rng.shuffle(conns)
        st.total = len(conns)
        asked: set[int] = set()  # closed in a batch
        for i in range(0, len(conns), batch):
            if time.monotonic() >= end:
                break
            if i:
                # Jittered gap, so reconnects from consecutive batches do not line up.
                gap = interval * self._rng.uniform(0.5, 1.5)
                await asyncio.sleep(min(gap, max(0.0, end - time.monotonic())))
                if time.monotonic() >= end:
                    break  # the rest is closed (and counted) as forced below
            st.batches += 1
            sent = 0
            for conn in conns[i : i + batch]:
                if not conn.closing:
                    conn.close(code, reason)
                    asked.add(id(conn))
                    sent += 1
            st.closed += sent
            st.closes.add(time.monotonic() - self._began, sent)
        while self._live() and time.monotonic() < end:  # noqa: ASYNC110 (polls a count)
            await asyncio.sleep(0.05)
        for conn in list(self._live()):
            if not conn.closing:
                conn.close(code, reason)
            conn.abort()
            if id(conn) in asked:
                st.closed -= 1  # its close did not finish in time: it counts as forced only
            st.forced += 1
        st.state = "drained"
        st.finished_at = time.time()
        log.log(logging.WARNING if st.forced else logging.INFO,
                "drain finished in %.1f s: %d closed, %d forced (still open at the deadline); "
                "new connections refused until it is cancelled", time.monotonic() - self._began,
                st.closed, st.forced)
        return st

    def cancel(self) -> bool:
        """Stop a drain: the node takes connections again. False if none was running."""
        if self.status.state not in ("draining", "drained"):
            return False
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self.status.state = "cancelled"
        self.status.finished_at = time.time()
        log.info("drain cancelled after %.1f s (%d closed): taking connections again",
                 time.monotonic() - self._began, self.status.closed)
        return True

    async def wait(self) -> DrainStatus:
        if self._task is not None:
            try:
                return await self._task
            except asyncio.CancelledError:
                pass
        return self.status
