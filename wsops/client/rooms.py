"""The rooms a client follows: their trackers, subscribe outcomes and resubscribe frames.

No sockets: the client feeds it decoded frames and gets back the events to deliver and the
frames to send. Futures let concurrent ``subscribe`` calls of one room share one request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from wsops.client import wire
from wsops.client.errors import ProtocolViolation, ServerError
from wsops.client.events import Event, Message, PresenceEvent, SubscribeResult, SubscriptionLost
from wsops.client.tracker import RoomTracker

# Resubscribe refusals worth retrying on the same connection; any other code drops the room.
RETRYABLE_CODES: Final = frozenset({"unavailable", "rate_limited", "internal"})


def fail_future(fut: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail ``fut`` if still open, marking the error retrieved (nobody may be waiting)."""
    if not fut.done():
        fut.set_exception(exc)
        fut.exception()


@dataclass(eq=False, slots=True)
class Room:
    """One followed room: its sequencing and the outcome of the app's first subscribe."""

    tracker: RoomTracker
    ready: asyncio.Future[SubscribeResult]
    retries: int = 0
    presence: bool = False  # ask the server for join/leave events

    @property
    def name(self) -> str:
        return self.tracker.room


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    """What a subscribe reply asks of the client: events to deliver, a resubscribe to retry."""

    events: list[Event]
    retry: Room | None = None


class Rooms:
    """Followed rooms by name."""

    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._rooms

    def names(self) -> list[str]:
        return list(self._rooms)

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def add(self, name: str, presence: bool = False) -> Room:
        """Start following ``name`` (no position until its subscribe reply)."""
        room = Room(
            RoomTracker(name), asyncio.get_running_loop().create_future(), presence=presence
        )
        self._rooms[name] = room
        return room

    def discard(self, room: Room, error: BaseException | None = None) -> None:
        """Stop following ``room`` if it is still the one registered under its name."""
        if self._rooms.get(room.name) is room:
            del self._rooms[room.name]
        if error is not None:
            fail_future(room.ready, error)

    def resubscribe_frames(self) -> list[tuple[Room, dict[str, Any]]]:
        """``subscribe`` frames with ``since`` for every positioned room (a new connection)."""
        frames = ((r, self.resubscribe_frame(r)) for r in self._rooms.values())
        return [(r, f) for r, f in frames if f is not None]

    @staticmethod
    def resubscribe_frame(room: Room) -> dict[str, Any] | None:
        since = room.tracker.since()
        if since is None:
            return None  # the app's first subscribe is still queued or in flight
        frame: dict[str, Any] = {
            "op": "subscribe",
            "room": room.name,
            "since": {"offset": since[0], "epoch": since[1]},
        }
        if room.presence:
            frame["presence"] = True
        return frame

    def disconnected(self) -> None:
        for room in self._rooms.values():
            room.tracker.disconnected()

    def on_message(self, msg: Message) -> list[Event]:
        room = self._rooms.get(msg.room)
        return list(room.tracker.on_message(msg)) if room is not None else []

    def on_presence(self, event: PresenceEvent) -> list[Event]:
        return [event] if event.room in self._rooms else []

    def on_unsubscribed(self, frame: wire.Unsubscribed) -> list[Event]:
        """The server took the connection out of a room: it is no longer followed (not
        resubscribed after a reconnect), and the app hears it as a ``SubscriptionLost``."""
        room = self._rooms.get(frame.room)
        if room is None or not room.ready.done():
            # Sent after a subscribe's reply, frames in order: one that finds the app's
            # subscribe still unanswered was for a subscription the app has since left.
            return []
        self.discard(room)
        return [SubscriptionLost(room.name, "unsubscribed", frame.reason)]

    def on_subscribe_reply(self, room: Room | None, reply: wire.Reply) -> ReplyOutcome:
        """Position ``room``, the entry that sent the request, from its subscribe reply (before
        any later frame is read); nothing when it was unsubscribed meanwhile, even if the name
        was subscribed again (that new entry waits for its own reply)."""
        if room is None or self._rooms.get(room.name) is not room:
            return ReplyOutcome([])
        name = room.name
        if reply.ok:
            try:
                result = wire.subscribe_result(name, reply)
            except ProtocolViolation as exc:
                return self._refused(room, ServerError("bad_reply", str(exc)))
            room.retries = 0
            events: list[Event] = list(
                room.tracker.on_reply(result.offset, result.epoch, result.recovered)
            )
            if not room.ready.done():
                room.ready.set_result(result)
            return ReplyOutcome(events)
        return self._refused(room, reply.error())

    def _refused(self, room: Room, err: ServerError) -> ReplyOutcome:
        if not room.tracker.positioned:
            self.discard(room, err)  # the app's own subscribe failed: subscribe() raises it
            return ReplyOutcome([])
        if err.code in RETRYABLE_CODES:
            room.retries += 1
            return ReplyOutcome([], retry=room)
        self.discard(room)
        return ReplyOutcome([SubscriptionLost(room.name, err.code, err.message)])

    def fail_all(self, error: BaseException) -> None:
        for room in self._rooms.values():
            fail_future(room.ready, error)
        self._rooms.clear()
