"""A node's debug switch (``wsops debug``, ``/admin/debug``) and taps (``wsops tap``): for a
bounded time, one user's, one room's or one connection's requests are logged and their
publishes traced whatever the sample ratio; for a user or a connection, the frames the node
writes to it are logged too. A tap streams the same events (``wsops.server.tap``) instead.

Frames go to the ``wsops.debug`` logger at DEBUG (turned on while a target is on, back to its
level after), each cut to ``MAX_LOGGED`` characters. Nothing is paid while no target is on: a
session checks one attribute per request (``DebugTargets.active``), and a watched connection's
writes are logged by swapping its transport for a logging one, not by a check on every write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from wsops.admin.contract import DebugTarget
from wsops.admin.surface import TapStream
from wsops.server.core.broker import Published
from wsops.server.core.debugtargets import DebugTargets, Target, TargetRefused
from wsops.server.core.hub import Conn, Hub
from wsops.server.core.observer import Publish, Sink
from wsops.server.tap import END, MAX_TAPS, Tap, server_frames

log = logging.getLogger("wsops.debug")
MAX_LOGGED = 2048
"""Characters of one frame in a log line (the rest is counted, not logged)."""


def _cut(text: str) -> str:
    if len(text) <= MAX_LOGGED:
        return text
    return f"{text[:MAX_LOGGED]}... ({len(text) - MAX_LOGGED} more characters)"


def _doc(t: Target, now: float) -> DebugTarget:
    return DebugTarget(id=t.id, kind=t.kind, value=t.value, started_at=t.started_at,
                       seconds_left=round(max(0.0, t.until - now), 3))


class LoggedSink:
    """A watched connection's transport: logs each text frame written (a debug target) or
    streams it (a tap), then writes it."""

    def __init__(self, switch: DebugSwitch, inner: Sink, conn_id: int, user: str) -> None:
        self.switch = switch
        self.inner = inner
        self.conn_id = conn_id
        self.user = user

    def _log(self, data: bytes) -> None:
        switch, cid, user = self.switch, self.conn_id, self.user
        logged = switch.targets.debugs(user, cid)
        taps = [t for t in switch.taps if t.matches(user, cid, None)]
        if not logged and not taps:
            return
        for opcode, payload in server_frames(data):
            if opcode != 1:
                continue
            if logged:
                log.debug("connection %d user %s <- %s", cid, user,
                          _cut(payload.decode("utf-8", "replace")))
            for tap in taps:
                tap.written(cid, user, payload)

    def write(self, data: bytes) -> None:
        self._log(data)
        self.inner.write(data)

    def writelines(self, data: list[bytes]) -> None:
        for frame in data:
            self._log(frame)
        self.inner.writelines(data)

    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def get_write_buffer_size(self) -> int:
        return self.inner.get_write_buffer_size()

    def abort(self) -> None:
        self.inner.abort()


class DebugSwitch:
    """Implements ``DebugTap`` for one node: targets, their expiry, logging, forced traces."""

    def __init__(self, hub: Hub, publish: Publish | None) -> None:
        self.hub = hub
        self.targets = DebugTargets()
        self.publish = publish  # traces whatever the ratio; None: the node does not trace
        self._level: int | None = None  # the logger's own level while a target is on
        self._wrapped: dict[int, Sink] = {}  # connection id -> its own transport
        self._timer: asyncio.TimerHandle | None = None
        self.taps: list[Tap] = []

    # -- what sessions and the endpoint call -------------------------------------------------

    def received(self, conn_id: int, user: str, text: str, room: str | None, op: str) -> None:
        if self.targets.debugs(user, conn_id, room):
            log.debug("connection %d user %s -> %s", conn_id, user, _cut(text))
        for tap in self.taps:
            if tap.matches(user, conn_id, room):
                tap.request(conn_id, user, text, room, op)

    def attach(self, conn: Conn) -> None:
        """A connection is watched (now, or since it opened): log or tap its writes."""
        if conn.id not in self._wrapped and self.targets.watches(conn.user, conn.id):
            self._wrapped[conn.id] = conn.transport
            conn.transport = LoggedSink(self, conn.transport, conn.id, conn.user)

    def opened(self, conn: Conn) -> None:
        """A connection opened while something is watched."""
        self.attach(conn)
        for tap in self.taps:
            if tap.matches(conn.user, conn.id, None):
                tap.connection("connect", conn.id, conn.user)

    def closed(self, conn: Conn, code: int) -> None:
        """A connection ended."""
        if self._wrapped.pop(conn.id, None) is not None:
            for tap in self.taps:
                if tap.matches(conn.user, conn.id, None):
                    tap.connection("disconnect", conn.id, conn.user, code)

    # -- taps --------------------------------------------------------------------------------

    def open_tap(self, kind: str, value: str, *, payloads: bool, rate: float) -> Tap:
        """A new tap (``TargetRefused`` with ``full`` past ``MAX_TAPS``)."""
        if len(self.taps) >= MAX_TAPS:
            raise TargetRefused(f"{MAX_TAPS} taps are open on this node already, the most it "
                                "serves: close one first", full=True)
        self.targets.tap(kind, value)
        tap = Tap(kind, value, payloads=payloads, rate=rate)
        self.taps.append(tap)
        for conn in list(self.hub.conns.values()):
            self.attach(conn)
        if kind == "room":
            self.hub.tap = self._room_message
        return tap

    def close_tap(self, tap: TapStream) -> None:
        if isinstance(tap, Tap) and tap in self.taps:
            self.taps.remove(tap)
            self.targets.untap(tap.kind, tap.value)
            self._settle()

    def _room_message(self, msg: Published, subscribers: int) -> None:
        for tap in self.taps:
            if tap.kind == "room" and tap.value == msg.room:
                tap.message(msg.room, msg.offset, msg.frame, subscribers)

    # -- what the admin API calls ------------------------------------------------------------

    @property
    def traced(self) -> bool:
        return self.publish is not None

    def start(self, kind: str, value: str, seconds: float) -> DebugTarget:
        """Watch ``kind`` ``value`` for ``seconds`` (raises ``TargetRefused``)."""
        target = self.targets.add(kind, value, seconds, time.monotonic(), time.time())
        if self._level is None:
            self._level = log.level
            log.setLevel(logging.DEBUG)
        for conn in list(self.hub.conns.values()):
            self.attach(conn)
        log.info("debug switch on for %s for %.0f s (traced: %s)", target.id, seconds,
                 "yes" if self.publish is not None else "no, the node does not trace")
        self._settle()
        return _doc(target, time.monotonic())

    def stop(self, target_id: str | None = None) -> list[str]:
        """Turn one target off (None: all); the ids turned off."""
        ids = list(self.targets.targets) if target_id is None else [target_id]
        gone = [t.id for t in (self.targets.remove(i) for i in ids) if t is not None]
        for target_id in gone:
            log.info("debug switch off for %s", target_id)
        self._settle()
        return gone

    def listing(self) -> list[DebugTarget]:
        now = time.monotonic()
        return [_doc(t, now) for t in sorted(self.targets.targets.values(), key=lambda t: t.id)]

    def close(self) -> None:
        """The node stops: every target off, every tap ends (its stream sees ``None``)."""
        self.stop()
        for tap in list(self.taps):
            self.close_tap(tap)
            with contextlib.suppress(asyncio.QueueFull):
                tap.queue.put_nowait(END)

    # -- expiry ------------------------------------------------------------------------------

    def _expire(self) -> None:
        self._timer = None
        for t in self.targets.expire(time.monotonic()):
            log.info("debug switch for %s ran out", t.id)
        self._settle()

    def _settle(self) -> None:
        """After targets changed: unwrap connections no longer watched, restore the logger's
        level when nothing is, arm the timer for the next expiry."""
        self._unwrap([cid for cid in self._wrapped if not self._still_watched(cid)])
        if not any(t.kind == "room" for t in self.taps):
            self.hub.tap = None
        if not self.targets.targets and self._level is not None:
            log.setLevel(self._level)
            self._level = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self.targets.next_expiry()
        if at is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, at - time.monotonic()), self._expire)

    def _still_watched(self, conn_id: int) -> bool:
        conn = self.hub.conns.get(conn_id)
        return conn is not None and self.targets.watches(conn.user, conn_id)

    def _unwrap(self, conn_ids: Sequence[int]) -> None:
        for cid in conn_ids:
            inner = self._wrapped.pop(cid)
            conn = self.hub.conns.get(cid)
            if conn is not None and isinstance(conn.transport, LoggedSink):
                conn.transport = inner
