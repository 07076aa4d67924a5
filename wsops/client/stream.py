"""Delivery of room events to the application: callbacks and async iterators.

Callbacks run inline in the client's read loop, so they see events in order and must be quick;
a callback that returns an awaitable has it scheduled as a task (its start keeps the order, its
end does not). Each ``EventStream`` has its own queue, filled from the moment it is created.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from wsops.client.events import (
    ClientState,
    Event,
    Gap,
    Message,
    PresenceEvent,
    SubscriptionLost,
)

log = logging.getLogger("wsops.client")

Callback = Callable[[Any], object]

_END: Final = object()


class EventStream:
    """``async for event in stream``: the room events from its creation until the client closes.

    Unbounded by default: a consumer that stops reading makes it grow. With ``maxsize``, a
    stream that falls that far behind is ended (and a warning logged) rather than skipping
    events: the consumer's loop stops after what it already holds, so it cannot miss a message
    without noticing.
    """

    def __init__(self, maxsize: int, detach: Callable[[EventStream], None]) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._maxsize = maxsize
        self._detach = detach
        self._ended = False

    def put(self, event: Event) -> None:
        """Queue an event; called by the client."""
        if self._ended:
            return
        if self._maxsize and self._queue.qsize() >= self._maxsize:
            log.warning("event stream overflowed (%d events unread); closing it", self._maxsize)
            self.end()
            return
        self._queue.put_nowait(event)

    def end(self) -> None:
        """No more events: the consumer's loop ends after the queued ones."""
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_END)
            self._detach(self)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # later calls end too
            raise StopAsyncIteration
        return item  # type: ignore[return-value]

    async def aclose(self) -> None:
        """Stop receiving events (the iterator ends after those already queued)."""
        self.end()


class Dispatcher:
    """Routes each event to its callback and to every open stream."""

    def __init__(
        self,
        on_message: Callable[[Message], object] | None = None,
        on_gap: Callable[[Gap], object] | None = None,
        on_presence: Callable[[PresenceEvent], object] | None = None,
        on_state: Callable[[ClientState], object] | None = None,
        on_lost: Callable[[SubscriptionLost], object] | None = None,
    ) -> None:
        self.on_message = on_message
        self.on_gap = on_gap
        self.on_presence = on_presence
        self.on_state = on_state
        self.on_lost = on_lost
        self._streams: list[EventStream] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def stream(self, maxsize: int = 0) -> EventStream:
        stream = EventStream(maxsize, self._detach)
        self._streams.append(stream)
        return stream

    def _detach(self, stream: EventStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)

    def emit(self, event: Event) -> None:
        """Hand one event to its callback, then to the streams."""
        callback: Callable[[Any], object] | None
        if isinstance(event, Message):
            callback = self.on_message
        elif isinstance(event, Gap):
            callback = self.on_gap
        elif isinstance(event, PresenceEvent):
            callback = self.on_presence
        else:
            callback = self.on_lost
        if callback is not None:
            self._call(callback, event)
        for stream in list(self._streams):
            stream.put(event)

    def state(self, state: ClientState) -> None:
        if self.on_state is not None:
            self._call(self.on_state, state)

    def _call(self, callback: Callable[[Any], object], arg: object) -> None:
        try:
            result = callback(arg)
        except Exception:
            log.exception("wsops client callback %r failed", callback)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(_logged(result, callback))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """End every stream (the client is closed)."""
        for stream in list(self._streams):
            stream.end()


async def _logged(awaitable: Awaitable[object], callback: object) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("wsops client callback %r failed", callback)
