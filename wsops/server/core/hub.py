"""Local connections, room membership and fan-out with coalesced writes.

A published frame is built once (by the broker) and appended to each subscriber's outgoing
buffer; every buffer touched in an event-loop tick is written with one ``writelines`` call at the
end of that tick, so a burst to one subscriber costs one system call, not one per message.
Nothing waits on a timer: the flush is a ``call_soon``. A connection whose buffered bytes pass its
limit is a slow consumer and is closed with 4000 instead of growing memory; writes never await,
so one slow socket never holds up the other subscribers of a room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from wsops.server.core.broker import Published
from wsops.server.core.control import CONTROL_ROOM
from wsops.server.core.flow import FlowSketch
from wsops.server.core.observer import HubObserver, Sink
from wsops.server.core.protocol import Close, presence_event, text_frame

Schedule = Callable[[Callable[[], None]], object]
"""Runs a callback soon, after the current one (``loop.call_soon``)."""


Closer = Callable[["Conn", int, str], None]
"""Starts closing a connection's WebSocket with (code, reason): one function for every
connection (the endpoint's), so a connection holds no closure of itself (no reference cycle:
a closed connection is freed by reference counting, without the cyclic GC)."""


def _call_soon(callback: Callable[[], None]) -> object:
    return asyncio.get_running_loop().call_soon(callback)


@dataclass
class HubStats:
    """Plain counters, read at scrape time by the metrics layer (cheaper than per-event metrics)."""

    published: int = 0
    deliveries: int = 0
    frames: int = 0
    delivered_bytes: int = 0
    flushes: int = 0
    writes: int = 0
    slow_consumers: int = 0
    resyncs: int = 0
    replies: int = 0
    close_codes: dict[int, int] = field(default_factory=dict)


class Conn:
    """One open WebSocket as the hub sees it: its outgoing buffer and its rooms."""

    __slots__ = (
        "_buf",
        "_buf_bytes",
        "_hub",
        "busy",
        "close_code",
        "closer",
        "closing",
        "deferred_close",
        "held_bytes",
        "id",
        "limit",
        "rooms",
        "transport",
        "user",
    )

    def __init__(
        self,
        hub: Hub,
        conn_id: int,
        user: str,
        transport: Sink,
        closer: Closer,
        limit: int,
    ) -> None:
        self._hub = hub
        self.id = conn_id
        self.user = user
        self.transport = transport
        self.closer = closer
        self.limit = limit
        self._buf: list[bytes] = []
        self._buf_bytes = 0
        self.rooms: set[str] = set()
        self.closing = False
        self.close_code: int | None = None
        self.busy = False  # a request of this connection is being served
        self.deferred_close: tuple[int, str] | None = None
        self.held_bytes = 0  # live messages held while a replay is sent (Room.syncing)

    def push(self, frame: bytes) -> None:
        """Queue a complete frame; written at the end of this tick."""
        if self.closing:
            return
        if not self._buf:
            self._hub.mark_dirty(self)
        self._buf.append(frame)
        self._buf_bytes += len(frame)
        if self._buf_bytes > self.limit:
            self.close(Close.SLOW_CONSUMER, "slow consumer")

    def send_text(self, text: str) -> None:
        self._hub.stats.replies += 1
        self.push(text_frame(text.encode()))

    def send_payload(self, payload: bytes) -> None:
        """A reply already encoded as UTF-8 JSON."""
        self._hub.stats.replies += 1
        self.push(text_frame(payload))

    def hold(self, held: list[Published], msg: Published) -> None:
        """Keep a live message until this connection's replay is sent. Held messages count
        against the send queue: a resume that cannot keep up with its room is a slow
        consumer (4000), not unbounded memory."""
        if self.closing:
            return
        held.append(msg)
        self.held_bytes += len(msg.frame)
        if self.held_bytes + self._buf_bytes > self.limit:
            self.close(Close.SLOW_CONSUMER, "slow consumer (resume behind its room)")

    def unhold(self, held: list[Published]) -> None:
        """``held`` is no longer kept for this connection (delivered, or the room left)."""
        self.held_bytes -= sum(len(msg.frame) for msg in held)

    def flush(self) -> None:
        """Write everything buffered in one call; detect a consumer that stopped reading."""
        buf = self._buf
        if not buf:
            return
        transport = self.transport
        if transport.is_closing():
            buf.clear()
            self._buf_bytes = 0
            return
        stats = self._hub.stats
        stats.writes += 1
        stats.frames += len(buf)
        stats.delivered_bytes += self._buf_bytes
        if len(buf) == 1:
            transport.write(buf[0])
        else:
            transport.writelines(buf)  # copied into the transport's buffer: ``buf`` is ours
        # Emptied, not replaced: a new list per write would be a GC-tracked object per
        # connection per tick for the collector (and the GC freezer) to walk.
        buf.clear()
        self._buf_bytes = 0
        if transport.get_write_buffer_size() > self.limit:
            self.close(Close.SLOW_CONSUMER, "slow consumer")

    def close(self, code: int, reason: str = "") -> None:
        """Flush what is queued, then close the WebSocket (once) with ``code``."""
        if self.closing:
            return
        if self.busy and code != Close.SLOW_CONSUMER:
            # Let the request being served finish and send its reply first: a publish that
            # was stored must be acknowledged, or the client would send it again.
            self.deferred_close = (code, reason)
            return
        if code == Close.SLOW_CONSUMER:
            self._hub.stats.slow_consumers += 1
            self._buf = []
            self._buf_bytes = 0
            self._hub.release_held(self)
        else:
            self.flush()
        self.closing = True
        self.closer(self, code, reason)

    def abort(self) -> None:
        """Drop the TCP connection at once (a drain past its deadline)."""
        self.closing = True
        self.transport.abort()

    @property
    def queued_bytes(self) -> int:
        return self._buf_bytes + self.transport.get_write_buffer_size()


class Room:
    """Local subscribers of one room.

    ``syncing`` holds subscribers still receiving a replay; ``watchers`` are the subscribers
    that asked for join/leave events (opt-in: sending every join to every member of a big room
    would cost n^2 frames when it fills up).
    """

    __slots__ = ("conns", "syncing", "watchers")

    def __init__(self) -> None:
        self.conns: dict[Conn, None] = {}
        self.syncing: dict[Conn, list[Published]] = {}
        self.watchers: dict[Conn, None] = {}


class Hub:
    """All local connections and rooms of a node; the broker's listener."""

    def __init__(self, schedule: Schedule = _call_soon,
                 observer: HubObserver | None = None) -> None:
        self._schedule = schedule
        self.observer = observer
        self.conns: dict[int, Conn] = {}
        self.rooms: dict[str, Room] = {}
        self.users: dict[str, int] = {}  # user -> open connections (distinct users: len)
        self.subscriptions = 0  # (connection, room) pairs, syncing or live
        self.flow = FlowSketch()  # the busiest rooms' traffic (the flow view)
        # Told of every message fanned out here while a room is tapped (wsops tap), else None.
        self.tap: Callable[[Published, int], None] | None = None
        self.on_control: Callable[[Published], None] | None = None  # CONTROL_ROOM's messages
        self.stats = HubStats()
        self._dirty: list[Conn | None] = []
        self._next_id = 0

    # -- connections -------------------------------------------------------------------------

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add(self, conn: Conn) -> None:
        self.conns[conn.id] = conn
        self.users[conn.user] = self.users.get(conn.user, 0) + 1

    def remove(self, conn: Conn) -> list[str]:
        """Forget a connection; returns the rooms it left that have no local subscriber now."""
        if self.conns.pop(conn.id, None) is not None:
            left = self.users.pop(conn.user) - 1
            if left:
                self.users[conn.user] = left
        conn.closing = True
        emptied = [room for room in list(conn.rooms) if self.leave_room(conn, room)]
        return emptied

    # -- rooms -------------------------------------------------------------------------------

    def join_room(self, conn: Conn, room: str, presence_events: bool = False) -> bool:
        """Add ``conn`` as a syncing subscriber; True if the room is new on this node."""
        r = self.rooms.get(room)
        created = r is None
        if r is None:
            r = self.rooms[room] = Room()
        if conn not in r.syncing and conn not in r.conns:
            self.subscriptions += 1
        r.syncing[conn] = []
        if presence_events:
            r.watchers[conn] = None
        conn.rooms.add(room)
        return created

    def finish_sync(self, conn: Conn, room: str, last_offset: int, epoch: str) -> None:
        """Replay is sent: deliver what arrived meanwhile (after ``last_offset``), go live."""
        r = self.rooms.get(room)
        if r is None:
            return
        held = r.syncing.pop(conn, None)
        if held is None:
            return
        conn.unhold(held)
        for msg in held:
            if msg.epoch != epoch or msg.offset > last_offset:
                conn.push(msg.frame)
                last_offset = msg.offset
                epoch = msg.epoch
        r.conns[conn] = None

    def leave_room(self, conn: Conn, room: str) -> bool:
        """Remove ``conn`` from ``room``; True if the room has no local subscriber left."""
        conn.rooms.discard(room)
        r = self.rooms.get(room)
        if r is None:
            return False
        held = r.syncing.pop(conn, None)
        if held:
            conn.unhold(held)
        if held is not None or conn in r.conns:
            self.subscriptions -= 1
        r.conns.pop(conn, None)
        r.watchers.pop(conn, None)
        if not r.conns and not r.syncing:
            del self.rooms[room]
            return True
        return False

    def release_held(self, conn: Conn) -> None:
        """Drop what is held for ``conn``'s replays (it is closing)."""
        for room in conn.rooms:
            r = self.rooms.get(room)
            held = r.syncing.get(conn) if r is not None else None
            if held:
                held.clear()
        conn.held_bytes = 0

    def room_sizes(self, top: int) -> list[tuple[str, int]]:
        """The ``top`` biggest rooms by local subscribers (a bounded list for the admin API)."""
        sizes = [(name, len(r.conns) + len(r.syncing)) for name, r in self.rooms.items()]
        sizes.sort(key=lambda item: item[1], reverse=True)
        return sizes[:top]

    # -- delivery (BrokerListener) -----------------------------------------------------------

    def on_message(self, msg: Published) -> None:
        r = self.rooms.get(msg.room)
        if r is None:
            if self.on_control is not None and msg.room == CONTROL_ROOM:
                self.on_control(msg)  # an order to the fleet: no connection is in that room
            return
        self.stats.published += 1
        frame = msg.frame
        conns = r.conns
        for conn in conns:
            conn.push(frame)
        n = len(conns)
        self.stats.deliveries += n
        self.flow.fanned_out(msg.room, n, len(frame))
        if self.tap is not None:
            self.tap(msg, n)
        if r.syncing:
            for syncing, held in list(r.syncing.items()):
                syncing.hold(held, msg)
        observer = self.observer
        if observer is not None and observer.fanout(msg, n) and not self._dirty:
            self.mark_dirty(None)

    def on_presence(self, room: str, kind: str, user: str) -> None:
        r = self.rooms.get(room)
        if r is None or not r.watchers:
            return
        frame = text_frame(presence_event(kind, room, user).encode())
        for conn in r.watchers:
            conn.push(frame)

    def on_resync(self, room: str) -> None:
        """The broker lost messages of ``room`` it cannot deliver: close the room's local
        subscribers with 4001 so each client resumes from its own position (and learns
        ``recovered: false`` if the gap cannot be filled). They get nothing more from the room
        meanwhile, even one whose close waits for a request being served."""
        r = self.rooms.get(room)
        if r is None:
            return
        victims = [*r.conns, *r.syncing]
        r.conns.clear()
        r.syncing.clear()
        r.watchers.clear()
        self.stats.resyncs += 1
        for conn in victims:
            conn.close(Close.RESYNC, "resync: resume with since")

    def mark_dirty(self, conn: Conn | None) -> None:
        """Schedule the end-of-tick flush (``None`` only schedules it)."""
        if not self._dirty:
            self._schedule(self.flush)
        self._dirty.append(conn)

    def flush(self) -> None:
        """End of tick: one write per connection that has queued frames."""
        dirty = self._dirty
        self._dirty = []
        self.stats.flushes += 1
        for conn in dirty:
            if conn is not None:
                conn.flush()
        if self.observer is not None:
            self.observer.flushed()
