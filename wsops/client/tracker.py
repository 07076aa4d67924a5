"""Per-room sequencing: deliver each message once, in order, and never leave a silent gap.

Pure (no sockets, no clocks), so the rules below are tested directly, including with
hypothesis. The client owns one ``RoomTracker`` per subscribed room and feeds it the room's
subscribe replies and messages; the tracker answers with the events to hand to the application.

Rules:

- The position is ``(offset, epoch)`` of the last message delivered, or of the subscribe reply
  before any message. It is what the client sends as ``since`` after a reconnect.
- Between a (re)connection and the room's subscribe reply, messages are held back: the reply
  decides whether they continue the stream.
- Same epoch: an offset at or below the position is a replay or duplicate and is dropped; the
  next offset is delivered; a jump past it is delivered after an explicit ``Gap``.
- Another epoch: the old epoch is retired (its late messages are dropped from then on). A new
  epoch starting at offset 1 continues the stream (the room's history expired while idle and a
  publish began a new one); starting later, a ``Gap`` comes first.
- ``recovered: false`` (or a fresh reply that does not match the position) is a ``Gap`` from the
  position to the reply's position, after which the stream continues from there.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from wsops.client.events import Gap, Message

# Only a handful of epochs can be in flight at once; remembering a few more is plenty.
_RETIRED_EPOCHS: Final = 16

TrackerEvent = Message | Gap


class RoomTracker:
    """Sequencing state of one subscribed room."""

    __slots__ = ("_held", "_retired", "epoch", "offset", "room", "synced")

    def __init__(self, room: str) -> None:
        self.room = room
        self.offset: int | None = None
        self.epoch: str | None = None
        # False from a (re)connection until the room's subscribe reply is applied.
        self.synced = False
        self._held: list[Message] = []
        self._retired: deque[str] = deque(maxlen=_RETIRED_EPOCHS)

    @property
    def positioned(self) -> bool:
        """True once a subscribe reply gave the room a position."""
        return self.epoch is not None

    def since(self) -> tuple[int, str] | None:
        """The ``(offset, epoch)`` to resume after, or None before the first reply."""
        if self.epoch is None:
            return None
        assert self.offset is not None  # set together with the epoch
        return self.offset, self.epoch

    def disconnected(self) -> None:
        """The connection ended: hold messages until the next subscribe reply."""
        self.synced = False
        self._held.clear()

    def on_reply(self, offset: int, epoch: str, recovered: bool | None) -> list[TrackerEvent]:
        """Apply a successful subscribe reply; returns a possible Gap and any held messages."""
        events: list[TrackerEvent] = []
        if self.epoch is None:
            self._move(offset, epoch)
        elif recovered is True:
            pass  # the replay from our position follows the reply
        elif recovered is False or (offset, epoch) != (self.offset, self.epoch):
            assert self.offset is not None  # set together with the epoch
            events.append(Gap(self.room, self.offset, self.epoch, offset, epoch))
            self._move(offset, epoch)
        self.synced = True
        held, self._held = self._held, []
        for msg in held:
            events.extend(self.on_message(msg))
        return events

    def on_message(self, msg: Message) -> list[TrackerEvent]:
        """Sequence one room message: returns what to deliver (nothing, it, or a Gap and it)."""
        if not self.synced:
            self._held.append(msg)
            return []
        if msg.epoch in self._retired:
            return []
        assert self.offset is not None and self.epoch is not None  # synced implies a position
        if msg.epoch == self.epoch:
            if msg.offset <= self.offset:
                return []
            if msg.offset == self.offset + 1:
                self.offset = msg.offset
                return [msg]
        elif msg.offset == 1:
            self._move(msg.offset, msg.epoch)
            return [msg]
        gap = Gap(self.room, self.offset, self.epoch, msg.offset - 1, msg.epoch)
        self._move(msg.offset, msg.epoch)
        return [gap, msg]

    def _move(self, offset: int, epoch: str) -> None:
        if epoch != self.epoch:
            if self.epoch is not None:
                self._retired.append(self.epoch)
            if epoch in self._retired:  # the server went back to an epoch we had left
                self._retired.remove(epoch)
        self.offset = offset
        self.epoch = epoch
