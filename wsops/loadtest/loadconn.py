"""One load-test connection and what it reads: message sequence numbers and latency, replies,
and with ``--reconnect`` its room position and unanswered publishes (``ShardRun`` reconnects).

The payload is scanned for the few fields it needs (``t``, ``s``, ``offset``, ``epoch``,
``id``) without parsing the JSON: the load generator must cost far less per message than the
server it measures.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from wsops.loadtest.latency import Latencies
from wsops.loadtest.plan import Target
from wsops.loadtest.rawclient import RawWebSocket


class Counts(Protocol):
    """What a connection reports to its shard (``ShardRun``)."""

    latency: Latencies
    acked: dict[str, int]
    refused: int

    @property
    def plan(self) -> Any: ...

    def count_error(self, kind: str) -> None: ...

_T = b'"t":'
_S = b'"s":'


def _number(payload: bytes, key: bytes) -> float:
    start = payload.find(key)
    if start < 0:
        raise ValueError("missing field")
    start += len(key)
    end = start
    while payload[end] not in b",}":
        end += 1
    return float(payload[start:end])


@dataclass
class RoomSeen:
    received: int = 0
    last: int = 0
    gaps: int = 0  # sequence numbers skipped
    out_of_order: int = 0  # arrived after a later one (late), or again (a repeat)
    # With --reconnect: where the subscriber is in its room (resumed from there), and the
    # publishes sent but not answered yet, by request id (sent again after a reconnect).
    offset: int = 0
    epoch: str = ""
    unacked: dict[int, bytes] = field(default_factory=dict)


def _message_position(payload: bytes) -> tuple[int, str] | None:
    """``offset`` and ``epoch`` of a message frame (the server writes both before ``data``)."""
    i = payload.find(b'"offset":')
    j = payload.find(b'"epoch":"')
    if i < 0 or j < 0:
        return None
    i += 9
    end = i
    while payload[end] not in b",}":
        end += 1
    j += 9
    return int(payload[i:end]), payload[j:payload.index(b'"', j)].decode()


def _reply_id(payload: bytes) -> int | None:
    i = payload.find(b'"id":')
    if i < 0:
        return None
    i += 5
    end = i
    while payload[end] not in b",}":
        end += 1
    try:
        return int(payload[i:end])
    except ValueError:
        return None


class LoadConn(RawWebSocket):
    """A connection that may subscribe to one room and publish to one room."""

    wants_text = True

    def __init__(self, target: Target, headers: bytes, shard: Counts,
                 before: LoadConn | None = None) -> None:
        super().__init__(target.host, target.port, target.path, None, headers)
        self.shard = shard
        # A reconnection takes over its predecessor's rooms and counts.
        self.room: str | None = before.room if before else None  # subscribed room
        self.pub_room: str | None = before.pub_room if before else None  # room it publishes to
        self.seen: RoomSeen = before.seen if before else RoomSeen()
        self.track = shard.plan.reconnect
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_text(self, payload: bytes) -> None:
        if payload.startswith(b'{"op":"message"'):
            seen = self.seen
            seen.received += 1
            try:
                sent_at = _number(payload, _T)
                seq = int(_number(payload, _S))
            except (ValueError, IndexError):
                self.shard.count_error("bad message")
                return
            self.shard.latency.add(time.time() - sent_at)
            if self.track and (position := _message_position(payload)) is not None:
                seen.offset, seen.epoch = position
            if seq == seen.last + 1 or seen.last == 0:
                pass
            elif seq > seen.last:
                seen.gaps += seq - seen.last - 1
            else:
                seen.out_of_order += 1
            seen.last = max(seen.last, seq)
        elif payload.startswith(b'{"op":"reply"'):
            if b'"ok":true' in payload:
                if not self.subscribed.done():
                    self.subscribed.set_result(None)
                elif self.pub_room is not None:
                    if self.track and self.seen.unacked.pop(_reply_id(payload) or -1,
                                                            None) is None:
                        return  # an answer to a publish sent again: counted once already
                    acked = self.shard.acked
                    acked[self.pub_room] = acked.get(self.pub_room, 0) + 1
            else:
                self.shard.refused += 1
                if self.track:  # answered (not stored): not sent again after a reconnect
                    self.seen.unacked.pop(_reply_id(payload) or -1, None)
                if not self.subscribed.done():
                    self.subscribed.set_exception(RuntimeError(payload[:200].decode()))
                    self.subscribed.exception()
