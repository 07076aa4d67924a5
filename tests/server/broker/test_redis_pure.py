"""The Redis broker's pure parts: channel payloads, feed decisions, RESP parsing, options."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis_fleet import node_record
from wsops.server.broker.redis_island import Islands
from wsops.server.broker.redis_url import (
    RedisOptions,
    SentinelTarget,
    check_broker,
    is_redis_url,
    parse_broker_url,
)
from wsops.server.broker.resp import Endpoint, RespError, encode_command, parse
from wsops.server.core.broker import BrokerUnavailable
from wsops.server.core.protocol import Position, message_payload, message_payload_parts

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                              max_size=4),
    max_leaves=10,
)


@given(data=json_values, offset=st.integers(1, 2**40), ts=st.integers(0, 2**45),
       tp=st.none() | st.text(max_size=60))
def test_the_script_joins_payload_parts_into_exactly_the_message_json(
    data: object, offset: int, ts: int, tp: str | None
) -> None:
    encoded = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    head, tail = message_payload_parts("room/1", encoded, ts, tp)
    # What the publish script does with the parts, the offset and the (hex) epoch.
    joined = head + str(offset).encode() + b',"epoch":"' + b"0a1b2c3d" + b'"' + tail
    assert joined == message_payload("room/1", offset, "0a1b2c3d", encoded, ts, tp)
    assert json.loads(joined)["data"] == data


def test_channel_header_round_trip_keeps_a_traceparent_unless_it_would_break_it() -> None:
    tp = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    payload = b'{"x":"a|b"}'
    msg = lua.parse_message(b"42|ep" + lua.header_rest(1700, 1.25, tp) + payload)
    assert msg == lua.Header(42, "ep", 1700, 1.25, tp, payload)
    odd = lua.parse_message(b"1|ep" + lua.header_rest(1, 0.5, "x|y") + payload)
    assert odd.traceparent is None and odd.payload == payload
    none = lua.parse_message(b"1|ep" + lua.header_rest(1, 0.5, None) + b"{}")
    assert none.traceparent is None
    with pytest.raises(ValueError):
        lua.parse_message(b"garbage")


def test_classify_continues_drops_duplicates_and_flags_gaps() -> None:
    at = Position(5, "e")
    assert lua.classify(None, "e", 9) == lua.DELIVER
    assert lua.classify(at, "e", 6) == lua.DELIVER
    assert lua.classify(at, "e", 5) == lua.DUPLICATE
    assert lua.classify(at, "e", 2) == lua.DUPLICATE
    assert lua.classify(at, "e", 7) == lua.GAP
    assert lua.classify(at, "f", 1) == lua.DELIVER  # a new epoch from its start
    assert lua.classify(at, "f", 2) == lua.GAP


def test_after_outage_fills_what_the_log_can_and_resyncs_the_rest() -> None:
    assert lua.after_outage(None, Position(9, "e")) == (0, 0)
    assert lua.after_outage(Position(4, "e"), Position(4, "e")) == (0, 0)
    assert lua.after_outage(Position(4, "e"), Position(9, "e")) == (5, 9)
    assert lua.after_outage(Position(4, "e"), Position(0, "f")) is None  # data lost
    assert lua.after_outage(Position(4, "e"), Position(3, "e")) is None


def test_keys_share_one_hash_tag_per_room() -> None:
    k = lua.Keys("wsops")
    assert k.meta("a:b") == "wsops:{a:b}:meta" and k.log("a:b") == "wsops:{a:b}:log"
    assert k.pres("r", "n1") == "wsops:{r}:pres:n1" and k.pnodes("r") == "wsops:{r}:pnodes"
    assert k.channel("a:b") == b"wsops:room:a:b" and k.node("n1") == "wsops:node:n1"


def test_resp_parser_handles_every_split_point() -> None:
    wire = (b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe\r\nl\r\n"
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n+OK\r\n-ERR no\r\n"
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n*2\r\n$1\r\nx\r\n$-1\r\n")
    expected = [[b"message", b"ch", b"he\r\nl"], [b"subscribe", b"ch", 1], b"OK",
                "ERR no", [b"pong", b""], [b"x", None]]
    for cut in range(len(wire) + 1):
        out: list[object] = []
        buf = wire[:cut]
        pos = parse(buf, 0, out)  # type: ignore[arg-type]
        buf = buf[pos:] + wire[cut:]
        parse(buf, 0, out)  # type: ignore[arg-type]
        got = [str(x) if isinstance(x, RespError) else x for x in out]
        assert got == expected, cut
    with pytest.raises(ValueError):
        parse(b"!oops\r\n", 0, [])
    assert encode_command("SUBSCRIBE", b"a") == b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"


def test_broker_url_options_are_split_from_the_redis_url() -> None:
    target, opts = parse_broker_url("redis://:pw@h:7000/2?heartbeat=0.5&prefix=blue&db=2")
    assert target.url == "redis://:pw@h:7000/2?db=2" and target.sentinel is None
    assert target.shown == "redis://h:7000/2"
    assert (opts.prefix, opts.heartbeat, opts.timeout) == ("blue", 0.5, 2.0)
    assert parse_broker_url("redis://h")[1] == RedisOptions()
    assert parse_broker_url("rediss://h/0")[0].shown == "rediss://h/0"
    for bad in ("memory", "http://h", "redis://h?heartbeat=x", "redis://h?timeout=0",
                "redis://h?heartbeat=0", "redis://h?heartbeat=-0.5", "redis://h?prefix=",
                "redis://h?timeout=nan"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)


def test_sentinel_urls_name_the_sentinels_the_master_and_its_credentials() -> None:
    target, opts = parse_broker_url(
        "redis+sentinel://app:s%40cret@10.0.0.1:26379,[::1]:26380,s3/mymaster/2"
        "?prefix=blue&timeout=1&sentinel_password=sp&sentinel_username=su")
    assert target.url is None
    assert target.sentinel == SentinelTarget(
        (("10.0.0.1", 26379), ("::1", 26380), ("s3", 26379)), "mymaster", 2, "app", "s@cret",
        False, "su", "sp")
    assert target.shown == "redis+sentinel://10.0.0.1:26379,[::1]:26380,s3/mymaster/2"
    assert (opts.prefix, opts.timeout) == ("blue", 1.0)
    plain = parse_broker_url("rediss+sentinel://:pw@h:1/m")[0].sentinel
    assert plain == SentinelTarget((("h", 1),), "m", 0, None, "pw", True, None, None)
    # The sentinels' credentials are only options of a sentinel URL.
    assert parse_broker_url("redis://h?sentinel_password=x")[0].url == (
        "redis://h?sentinel_password=x")
    for bad, why in (("redis+sentinel://h:1", "MASTER_NAME"),
                     ("redis+sentinel://h:1/m/x", "MASTER_NAME/DB"),
                     ("redis+sentinel://h:1/m/0/1", "MASTER_NAME/DB"),
                     ("redis+sentinel://h:x/m", "HOST:PORT"),
                     ("redis+sentinel://h:0/m", "HOST:PORT"),
                     ("redis+sentinel://h:1,/m", "HOST:PORT"),
                     ("redis+sentinel://:pw@h:1/m?db=2", "unknown option 'db'")):
        with pytest.raises(ValueError, match=why) as err:
            parse_broker_url(bad)
        assert "pw" not in str(err.value)
    # Hosts and credentials at their edges; what an error shows of the URL.
    edge = parse_broker_url("redis+sentinel://app@h:65535,[fe80::1]:1/m")[0].sentinel
    assert edge is not None and edge.sentinels == (("h", 65535), ("fe80::1", 1))
    assert (edge.username, edge.password) == ("app", None)
    for bad, shown in (("redis+sentinel://h:65536/m", "'redis+sentinel://h:65536/m'"),
                       ("redis+sentinel://app@h:0/m", "'redis+sentinel://app@h:0/m'"),
                       ("redis+sentinel://app:pw@h:0/m", "'redis+sentinel://app:***@h:0/m'"),
                       ("redis+sentinel://h:1/m?a=1&b=2", "unknown option 'a'"),
                       ("redis+sentinel://x]:1/m", "Invalid IPv6 URL")):
        with pytest.raises(ValueError, match=re.escape(shown)):
            parse_broker_url(bad)
    assert [is_redis_url(u) for u in ("redis://h", "rediss+sentinel://h/m", "memory",
                                      "redis+cluster://h", "redis:/h")] == [
        True, True, False, True, False]


def test_check_broker_refuses_unknown_brokers_and_replica_acks_without_redis() -> None:
    for broker in ("memory", "", "redis://h", "redis+sentinel://h:1/m"):
        check_broker(broker, "master")
    check_broker("redis://h", "replica")
    for broker, ack, why in (("memory", "replica", "needs a Redis broker"),
                             ("", "replica", "needs a Redis broker"),
                             ("postgres://x", "master", "unknown broker 'postgres://x'"),
                             ("redis://h?timeout=0", "master", "above 0")):
        with pytest.raises(ValueError, match=why):
            check_broker(broker, ack)
    ep = Endpoint.from_url("rediss://user:p%40ss@host:6380/0")
    assert ep == Endpoint("host", 6380, "user", "p@ss", True)




def test_node_records_are_typed() -> None:
    rec = node_record("n1", {b"admin_url": b"http://h:1", b"started_at": b"12.5",
                             b"draining": b"1", b"connections": b"3",
                             b"heartbeat_ms": b"1500", b"version": b"0.1.0"})
    assert rec == {"id": "n1", "admin_url": "http://h:1", "started_at": 12.5, "draining": True,
                   "connections": 3, "heartbeat_at": 1.5, "version": "0.1.0"}


async def test_islands_number_on_from_the_last_offset_and_refuse_beyond_their_bound() -> None:
    islands = Islands(max_pending=3)
    a1 = islands.publish("a", b'{"x":1}', 1000, 1.0, None, after=7)
    a2 = islands.publish("a", b"2", 1001, 1.1, None, after=7)
    b1 = islands.publish("b", b"3", 1002, 1.2, None)
    assert (a1.offset, a2.offset, b1.offset) == (8, 9, 1)
    assert a1.local and a1.epoch == a2.epoch != b1.epoch
    assert json.loads(a1.frame[2:]) == {"op": "message", "room": "a", "offset": 8,
                                        "epoch": a1.epoch, "data": {"x": 1}, "ts": 1000}
    with pytest.raises(BrokerUnavailable, match=r"3 messages \(9 bytes\) wait"):
        islands.publish("c", b"4", 1003, 1.3, None)
    island = islands.rooms["a"]
    islands.forwarded_one(island)
    assert [p.data for p in island.pending] == [b"2"] and islands.pending == 2
    assert islands.pending_bytes == 2
    waiting = asyncio.ensure_future(islands.settled("a", 5.0))
    await asyncio.sleep(0)  # one turn of the loop: it is waiting, not done
    assert not waiting.done()
    islands.finish("a")
    await waiting
    with pytest.raises(BrokerUnavailable, match="still wait"):
        await islands.settled("b", 0.01)
    assert (islands.published, islands.forwarded, islands.has("a")) == (3, 1, False)


def test_islands_are_bounded_in_bytes_too() -> None:
    islands = Islands(max_pending=100, max_bytes=10)
    islands.publish("a", b'"12345"', 1, 1.0, None)
    with pytest.raises(BrokerUnavailable, match=r"1 messages \(7 bytes\) wait"):
        islands.publish("a", b'"1234"', 2, 1.0, None)
    assert islands.publish("a", b"123", 3, 1.0, None).offset == 2
