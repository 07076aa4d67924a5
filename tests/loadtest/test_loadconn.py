"""What one load-test connection makes of the frames it reads (``LoadConn.on_text``): with
``--reconnect`` a publish leaves the unanswered set once answered, acknowledged or refused,
so that only what got no answer is sent again after a reconnect."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from wsops.loadtest.latency import Latencies
from wsops.loadtest.loadconn import LoadConn
from wsops.loadtest.plan import Target


@dataclass
class Shard:
    plan: Any = field(default_factory=lambda: SimpleNamespace(reconnect=True))
    latency: Latencies = field(default_factory=Latencies)
    acked: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    errors: list[str] = field(default_factory=list)

    def count_error(self, kind: str) -> None:
        self.errors.append(kind)


async def test_answered_publishes_leave_the_unanswered_set_acked_or_refused() -> None:
    shard = Shard()
    conn = LoadConn(Target("127.0.0.1", 1, "/ws", "127.0.0.1"), b"", shard)
    conn.subscribed.set_result(None)
    conn.pub_room = "r"
    conn.seen.unacked = {1: b"one", 2: b"two", 3: b"three"}
    conn.on_text(b'{"op":"reply","id":1,"ok":true,"room":"r","offset":7,"epoch":"e"}')
    conn.on_text(b'{"op":"reply","id":2,"ok":false,"error":{"code":"rate_limited"}}')
    assert conn.seen.unacked == {3: b"three"}  # only the unanswered one is sent again
    assert shard.acked == {"r": 1} and shard.refused == 1
    conn.on_text(b'{"op":"reply","id":1,"ok":true,"room":"r","offset":8,"epoch":"e"}')
    assert shard.acked == {"r": 1}  # the answer to a publish sent again: counted once
