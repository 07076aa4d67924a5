"""Bookkeeping of requests: ids, the bounded outgoing queue, and requests awaiting a reply.

No sockets: the connection code takes frames out with ``next_to_send`` and feeds replies back
with ``resolve``. Each request carries an asyncio future that its caller awaits.

Delivery guarantee: a request that was sent but not answered when the connection dropped goes
back to the front of the queue (in id order) and is sent again on the next connection, so such
a request is done *at least once*: a publish whose reply was lost may be stored twice. Internal
resubscribes are not re-sent but dropped, because the client rebuilds them from its rooms'
positions on every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from wsops.client.errors import QueueFull
from wsops.client.wire import MAX_ID, Reply, encode


@dataclass(eq=False, slots=True)
class Pending:
    """One request: its frame (with ``op`` and ``id``) and the future of its reply."""

    id: int
    frame: dict[str, Any]
    future: asyncio.Future[Reply]
    resend: bool = True
    sent: bool = field(default=False)
    text: str = ""  # the frame as sent, encoded when queued
    # A subscribe's room entry (``rooms.Room``): its reply is for that entry only, not for one
    # subscribed again under the same name after an unsubscribe.
    owner: object = None

    @property
    def op(self) -> str:
        return str(self.frame["op"])

    @property
    def room(self) -> str:
        return str(self.frame.get("room", ""))


class RequestBook:
    """Increasing ids, the outgoing queue (urgent first) and the in-flight table."""

    def __init__(self, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.max_queue = max_queue
        self._ids = itertools.count(1)
        self._urgent: deque[Pending] = deque()
        self._queue: deque[Pending] = deque()
        self._in_flight: dict[int, Pending] = {}

    def __len__(self) -> int:
        """Requests not answered yet, queued or in flight."""
        return len(self._urgent) + len(self._queue) + len(self._in_flight)

    @property
    def queued(self) -> int:
        """Requests waiting to be sent (what ``max_queue`` bounds)."""
        return len(self._queue)

    def add(
        self,
        frame: dict[str, Any],
        *,
        urgent: bool = False,
        resend: bool = True,
    ) -> Pending:
        """Queue a new request; its ``id`` is set here.

        Urgent requests (the client's own resubscribes) go ahead of the queue and do not count
        against ``max_queue``; others raise ``QueueFull`` when the queue is at its bound.
        """
        if not urgent and len(self._queue) >= self.max_queue:
            raise QueueFull(f"outgoing queue is full ({self.max_queue} requests)")
        req_id = next(self._ids)
        if req_id >= MAX_ID:  # pragma: no cover - 2**53 requests
            raise OverflowError("request ids exhausted")
        frame = {**frame, "id": req_id}
        # Encoded now: data JSON cannot hold (NaN, a set) fails its own request at once
        # instead of the connection's write loop.
        text = encode(frame)
        pending = Pending(req_id, frame, asyncio.get_running_loop().create_future(), resend,
                          text=text)
        (self._urgent if urgent else self._queue).append(pending)
        return pending

    def has_outgoing(self) -> bool:
        return bool(self._urgent or self._queue)

    def next_to_send(self) -> Pending | None:
        """Take the next request to write and count it as in flight."""
        while self._urgent or self._queue:
            pending = (self._urgent or self._queue).popleft()
            if pending.future.done():  # its caller gave up while it was queued
                continue
            pending.sent = True
            self._in_flight[pending.id] = pending
            return pending
        return None

    def queued_for(self, op: str, room: str) -> bool:
        """True when a request ``op`` for ``room`` waits in the queue."""
        return any(
            p.op == op and p.room == room and not p.future.done()
            for p in itertools.chain(self._urgent, self._queue)
        )

    def resolve(self, reply: Reply) -> Pending | None:
        """Complete the in-flight request the reply answers; None when none matches."""
        if reply.id is None:
            return None
        pending = self._in_flight.pop(reply.id, None)
        if pending is not None and not pending.future.done():
            pending.future.set_result(reply)
        return pending

    def withdraw(self, pending: Pending) -> None:
        """Forget a request whose caller stopped waiting (timeout or cancellation)."""
        self._in_flight.pop(pending.id, None)
        for q in (self._urgent, self._queue):
            with contextlib.suppress(ValueError):
                q.remove(pending)

    def connection_lost(self) -> list[Pending]:
        """Requeue in-flight requests at the front, in id order; returns the dropped ones.

        Dropped are those with ``resend=False``: their futures are cancelled.
        """
        dropped: list[Pending] = []
        again: list[Pending] = []
        for pending in sorted(self._in_flight.values(), key=lambda p: p.id):
            if pending.future.done():
                continue
            (again if pending.resend else dropped).append(pending)
        self._in_flight.clear()
        kept = [p for p in self._urgent if p.resend]
        dropped.extend(p for p in self._urgent if not p.resend)
        self._urgent = deque(kept)
        for pending in reversed(again):
            pending.sent = False
            self._queue.appendleft(pending)
        for pending in dropped:
            pending.future.cancel()
        return dropped

    def fail_all(self, exc: BaseException) -> None:
        """Fail every open request with ``exc`` (the client is closing)."""
        for pending in itertools.chain(self._urgent, self._queue, self._in_flight.values()):
            if not pending.future.done():
                pending.future.set_exception(exc)
                # Mark it retrieved: a request whose caller is gone must not log a warning.
                pending.future.exception()
        self._urgent.clear()
        self._queue.clear()
        self._in_flight.clear()
