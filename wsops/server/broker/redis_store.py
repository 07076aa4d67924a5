"""Storing one message in a room's Redis log: what a node's broker does for each publish, and
what ``wsops.Publisher`` does without a node, so both give the same offsets, history and
envelope.

One Lua script (``redis_scripts.PUBLISH``) takes the room's next offset, appends the message to
the room's stream (bounded, its TTL refreshed) and PUBLISHes it on the room's channel. It is
never retried: a retried script could store a message twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis_link import Link
from wsops.server.core.broker import BrokerUnavailable, Published
from wsops.server.core.history import new_epoch
from wsops.server.core.protocol import message_payload_parts, text_frame


class NotStored(BrokerUnavailable):
    """Redis did not run the script in time (it gave up on it): nothing stored."""


class Unreplicated(BrokerUnavailable):
    """Stored, but no replica confirmed it in time (``ack="replica"``)."""


@dataclass(frozen=True, slots=True)
class RoomLogs:
    """How rooms' logs are kept: key names, length, TTL, the script's deadline and acks."""

    keys: lua.Keys
    history_size: int
    ttl_ms: int
    timeout: float
    ack: str = "master"


async def store(logs: RoomLogs, link: Link, room: str, data: bytes, ts: int,
                accepted_at: float, traceparent: str | None = None,
                sender: str | None = None, tracestate: str | None = None) -> Published:
    """Store ``data`` (JSON) as ``room``'s next message through ``link`` (the master of the
    room's slot); NotStored, Unreplicated or BrokerUnavailable when it was not confirmed."""
    head, tail = message_payload_parts(room, data, ts, traceparent, sender, tracestate)
    k = logs.keys
    # A script still queued in Redis after we gave up must not run: half the timeout of
    # margin, on Redis' clock (its skew measured by a heartbeat or probe).
    deadline = link.redis_ms() + int(logs.timeout * 500)
    keys = [k.meta(room), k.log(room)]
    args = [k.channel(room), new_epoch(), logs.history_size, logs.ttl_ms, deadline, head,
            tail, lua.header_rest(ts, accepted_at, traceparent), link.lineage]
    if logs.ack == "replica":
        res, replicas = await link.run_replicated(
            "publish", keys, args, 1, int(logs.timeout * 500))
        if res is not None and replicas < 1:
            raise Unreplicated(
                "publish not confirmed by a replica in time (it may still be delivered)")
    else:
        res = await link.run("publish", keys, args)
    if res is None:
        raise NotStored("broker too slow: publish not done")
    offset, epoch = int(res[0]), res[1].decode()
    payload = b"%s%d,\"epoch\":\"%s\"%s" % (head, offset, epoch.encode(), tail)
    return Published(room, offset, epoch, text_frame(payload), traceparent, accepted_at,
                     tracestate=tracestate)
