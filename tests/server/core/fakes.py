"""Socket-free stand-ins for the core's tests: a sink that records frames, a scheduler that
runs callbacks when told, and a connection factory."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from wsops.server.core.hub import Conn, Hub
from wsops.server.core.protocol import frame_payload


class Sink:
    """Records what a connection writes: each element one complete frame.

    ``keep``: the peer reads nothing, so every byte written stays in ``buffered`` until the
    test drains it (sets ``buffered``)."""

    def __init__(self, buffered: int = 0, *, keep: bool = False) -> None:
        self.frames: list[bytes] = []
        self.writes = 0  # system calls a transport would make
        self.calls: list[str] = []  # "write" or "writelines", one per call
        self.buffered = buffered  # what the kernel would not take yet
        self.keep = keep
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.calls.append("write")
        self.frames.append(data)
        if self.keep:
            self.buffered += len(data)

    def writelines(self, data: list[bytes]) -> None:
        self.writes += 1
        self.calls.append("writelines")
        self.frames.extend(data)
        if self.keep:
            self.buffered += sum(len(frame) for frame in data)

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = self.closed = True

    def messages(self) -> list[dict[str, Any]]:
        """Every frame written so far, decoded."""
        return [json.loads(bytes(frame_payload(f))) for f in self.frames]

    def take(self) -> list[dict[str, Any]]:
        out = self.messages()
        self.frames.clear()
        return out


class Ticks:
    """``Hub(schedule=...)``: queues callbacks; ``run()`` is the end of the event-loop tick."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def __call__(self, callback: Callable[[], None]) -> None:
        self.pending.append(callback)

    def run(self) -> int:
        done = 0
        while self.pending:
            self.pending.pop(0)()
            done += 1
        return done


class Closes:
    """Every conn's closer (``hub.Closer``): records (conn id, code, reason)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, str]] = []

    def __call__(self, conn: Conn, code: int, reason: str) -> None:
        self.calls.append((conn.id, code, reason))

    def codes(self) -> list[int]:
        return [code for _, code, _ in self.calls]


def connect(hub: Hub, closes: Closes, *, user: str = "u", limit: int = 1 << 20,
            sink: Sink | None = None) -> tuple[Conn, Sink]:
    sink = sink or Sink()
    conn_id = hub.new_id()
    conn = Conn(hub, conn_id, user, sink, closes, limit)
    hub.add(conn)
    return conn, sink
