"""One open tap (``wsops tap``, ``GET /admin/tap``): a live, sampled, size-capped stream of one
room's, user's or connection's messages and control events.

A busy room cannot hurt the node through its tap: events pass a token bucket (``rate`` per
second) before anything is built, then a bounded queue (``MAX_QUEUE``); what either refuses is
counted in ``dropped`` and reported in the stream's ``stats`` lines. Payloads are left out (an
event says op, room, sizes) unless the tap asked for them, and are then cut to
``MAX_PAYLOAD`` characters.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any, Final

from wsops.server.core.token_bucket import TokenBucket

MAX_QUEUE: Final = 256
MAX_PAYLOAD: Final = 1024
DEFAULT_RATE: Final = 20.0
MAX_RATE: Final = 200.0
MAX_TAPS: Final = 8
MAX_SECONDS: Final = 3600.0
END: Final[dict[str, Any]] = {"event": "end"}
"""Put on a tap's queue when the node stops: its stream ends."""


def server_frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(opcode, payload) of each whole frame in ``data`` as a server writes them (unmasked)."""
    i, end = 0, len(data)
    while i + 2 <= end:
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        head = 2
        if n == 126:
            n, head = int.from_bytes(data[i + 2:i + 4], "big"), 4
        elif n == 127:
            n, head = int.from_bytes(data[i + 2:i + 10], "big"), 10
        yield opcode, data[i + head:i + head + n]
        i += head + n


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PAYLOAD else text[:MAX_PAYLOAD] + "..."


class Tap:
    """Events for one watched user, room or connection, waiting for the stream to send them."""

    def __init__(self, kind: str, value: str, *, payloads: bool, rate: float) -> None:
        self.kind = kind
        self.value = value
        self.payloads = payloads
        self.rate = rate
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_QUEUE)
        self._bucket = TokenBucket(rate, max(1.0, rate), time.monotonic())
        self.sent = 0
        self.dropped = 0

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.value}"

    def matches(self, user: str | None, conn_id: int | None, room: str | None) -> bool:
        return ((self.kind == "user" and user == self.value)
                or (self.kind == "room" and room == self.value)
                or (self.kind == "connection" and conn_id is not None
                    and str(conn_id) == self.value))

    def admit(self) -> bool:
        """Room for one more event (rate and queue); else it is counted as dropped."""
        if self.queue.full() or not self._bucket.allow(time.monotonic()):
            self.dropped += 1
            return False
        return True

    def put(self, event: dict[str, Any]) -> None:
        """An event ``admit`` let in."""
        self.queue.put_nowait(event)

    # -- events ------------------------------------------------------------------------------

    def request(self, conn_id: int, user: str, text: str, room: str | None, op: str) -> None:
        """A watched connection sent ``text``."""
        if self.admit():
            event = {"t": time.time(), "event": "request", "conn": conn_id, "user": user,
                     "op": op, "room": room, "bytes": len(text.encode())}
            if self.payloads:
                event["frame"] = _cut(text)
            self.put(event)

    def written(self, conn_id: int, user: str, payload: bytes) -> None:
        """The node wrote a text frame of ``payload`` to a watched connection."""
        if self.admit():
            event: dict[str, Any] = {"t": time.time(), "event": "out", "conn": conn_id,
                                     "user": user, "bytes": len(payload)}
            try:
                body = json.loads(payload)
            except ValueError:
                body = None
            if isinstance(body, dict):
                for key in ("op", "room", "offset", "id", "ok"):
                    if key in body:
                        event[key] = body[key]
            if self.payloads:
                event["frame"] = _cut(payload.decode("utf-8", "replace"))
            self.put(event)

    def message(self, room: str, offset: int, frame: bytes, subscribers: int) -> None:
        """A message of a watched room was fanned out to ``subscribers`` on this node."""
        if self.admit():
            event: dict[str, Any] = {"t": time.time(), "event": "message", "room": room,
                                     "offset": offset, "subscribers": subscribers,
                                     "bytes": len(frame)}
            if self.payloads:
                _, payload = next(server_frames(frame))
                event["frame"] = _cut(payload.decode("utf-8", "replace"))
            self.put(event)

    def connection(self, what: str, conn_id: int, user: str, code: int | None = None) -> None:
        """A watched user's connection opened (``connect``) or ended (``disconnect``)."""
        if self.admit():
            event: dict[str, Any] = {"t": time.time(), "event": what, "conn": conn_id,
                                     "user": user}
            if code is not None:
                event["code"] = code
            self.put(event)
