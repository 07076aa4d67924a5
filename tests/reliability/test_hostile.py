"""Hostile input on open connections (issue #8): broken frames, fragment and ping floods, unknown
ops, deep or huge JSON and abusive room names. Each gets its documented outcome while a
bystander connection keeps publishing and receiving; figures go to tests/artifacts/hostile-*.json.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import time
from typing import Any

from tests.conftest import Connect, ServerFactory
from tests.reliability.bystander import Bystander
from tests.support.artifacts import record
from tests.support.rawws import client_frame, open_raw, read_close_code, read_frame
from tests.support.scrape import scrape
from tests.support.waits import until


async def read_json(reader: asyncio.StreamReader, timeout: float = 5.0) -> dict[str, Any]:
    """The next text frame from the server, as JSON (skipping pings)."""
    async with asyncio.timeout(timeout):
        while True:
            op, payload = await read_frame(reader)
            assert op in (0x1, 0x9), (op, payload[:80])
            if op == 0x1:
                obj: dict[str, Any] = json.loads(payload)
                return obj


def with_first_byte(frame: bytes, first: int) -> bytes:
    return bytes([first]) + frame[1:]


def unmasked(payload: bytes, opcode: int = 0x1) -> bytes:
    assert len(payload) < 126
    return struct.pack("!BB", 0x80 | opcode, len(payload)) + payload


PUBLISH = b'{"op":"publish","room":"raw","id":1,"data":1}'
# name -> (bytes sent after the upgrade, the close code the server must send)
BAD_FRAMES: dict[str, tuple[bytes, int]] = {
    "rsv1 set without an extension": (with_first_byte(client_frame(PUBLISH), 0x80 | 0x40 | 0x1),
                                      1002),
    "rsv2+rsv3 set": (with_first_byte(client_frame(PUBLISH), 0x80 | 0x30 | 0x1), 1002),
    "control frame of 126 bytes": (client_frame(b"p" * 126, opcode=0x9), 1002),
    "fragmented control frame": (client_frame(b"p", opcode=0x9, fin=False), 1002),
    "continuation without a start": (client_frame(b'{"op":1}', opcode=0x0), 1002),
    "reserved opcode 0x3": (client_frame(b"x", opcode=0x3), 1002),
    "new text frame inside a fragmented one": (
        client_frame(b'{"op":', fin=False) + client_frame(b"1}"), 1002),
}


async def test_malformed_frames_get_1002_and_a_truncated_frame_counts_as_1006(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory()
    by = await Bystander.start(server.url)
    taken: dict[str, float] = {}
    for name, (frame, code) in BAD_FRAMES.items():
        reader, writer, status = await open_raw(server.port)
        assert status == 101
        started = time.perf_counter()
        writer.write(frame)
        assert await read_close_code(reader) == code, name
        taken[name] = round((time.perf_counter() - started) * 1000, 2)
        writer.close()
    # A header promising 1000 bytes, 10 sent, then the socket ends (FIN): no close frame.
    before = await scrape(server.admin_url)
    for _ in range(5):
        reader, writer, status = await open_raw(server.port)
        assert status == 101
        writer.write(client_frame(b"x" * 1000)[:18])
        await writer.drain()
        writer.close()
    await until(lambda: len(server.node.hub.conns) == 1)
    after = await scrape(server.admin_url)
    lost = (after.get("wsops_connections_closed_total", route="/ws", code="1006")
            - before.get("wsops_connections_closed_total", route="/ws", code="1006"))
    assert lost == 5
    assert after.get("wsops_connections_closed_total", route="/ws", code="1002") == len(BAD_FRAMES)
    assert after.get("wsops_connections_open", route="/ws") == 1  # the bystander
    figures = await by.stop()
    record("hostile-frames.json", {**figures, "close_ms": taken, "truncated_counted_1006": lost})


async def test_an_unmasked_client_frame_closes_with_1002_unserved(
    server_factory: ServerFactory,
) -> None:
    # RFC 6455 5.1: a server MUST close on an unmasked client frame (masking protects
    # intermediaries from payloads a page crafted; every browser masks). aiohttp (3.14) does
    # not check; the bundled server's own frame reader does.
    server = await server_factory()
    by = await Bystander.start(server.url)
    reader, writer, status = await open_raw(server.port)
    assert status == 101
    writer.write(unmasked(PUBLISH))
    assert await read_close_code(reader) == 1002
    writer.close()
    assert (await server.node.broker.history("raw", 10, 1 << 20)).items == []  # not served
    figures = await by.stop()
    record("hostile-unmasked.json", {**figures, "unmasked_publish_served": False})


async def test_a_message_in_thousands_of_tiny_fragments_closes_with_1009_over_the_limit(
    server_factory: ServerFactory,
) -> None:
    limit = 4096
    server = await server_factory(max_message_size=limit)
    by = await Bystander.start(server.url)
    reader, writer, status = await open_raw(server.port)
    assert status == 101
    n = limit + 1000
    frames = [client_frame(b"[", fin=False)] + [client_frame(b" ", 0x0, fin=False)] * (n - 2)
    started = time.perf_counter()
    writer.write(b"".join(frames))
    assert await read_close_code(reader) == 1009
    took = time.perf_counter() - started
    writer.close()

    # Within the limit: a publish in 1-byte fragments, with 5000 empty ones in between.
    reader, writer, status = await open_raw(server.port)
    assert status == 101
    text = json.dumps({"op": "publish", "room": "frag", "id": 9, "data": "y" * 3000}).encode()
    parts = [text[i:i + 1] for i in range(len(text))]
    out = [client_frame(parts[0], 0x1, fin=False)]
    out += [client_frame(b"", 0x0, fin=False)] * 5000
    out += [client_frame(p, 0x0, fin=i == len(parts) - 1) for i, p in enumerate(parts[1:], 1)]
    started = time.perf_counter()
    writer.write(b"".join(out))
    reply = await read_json(reader)
    took_ok = time.perf_counter() - started
    assert reply["id"] == 9 and reply["ok"], reply
    writer.close()
    hist = await by.client.call("history", "frag")
    assert hist["messages"][0]["data"] == "y" * 3000
    figures = await by.stop()
    record("hostile-fragments.json", {
        **figures, "over_limit_fragments": n, "closed_1009_after_ms": round(took * 1000, 1),
        "within_limit_fragments": len(out), "within_limit_reply_ms": round(took_ok * 1000, 1),
    })


async def test_ten_thousand_pings_are_each_answered_and_the_connection_stays(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory()
    by = await Bystander.start(server.url)
    reader, writer, status = await open_raw(server.port)
    assert status == 101
    pings = 10_000
    started = time.perf_counter()

    async def send() -> None:
        for i in range(0, pings, 500):
            writer.write(b"".join(client_frame(struct.pack("!I", j), 0x9)
                                  for j in range(i, i + 500)))
            await writer.drain()

    sending = asyncio.create_task(send())
    pongs: list[int] = []
    async with asyncio.timeout(8):
        while len(pongs) < pings:
            op, payload = await read_frame(reader)
            assert op == 0xA, (op, payload[:80])
            pongs.append(struct.unpack("!I", payload)[0])
    took = time.perf_counter() - started
    await sending
    assert pongs == list(range(pings))  # every ping answered, in order, with its payload
    writer.write(client_frame(PUBLISH))
    assert (await read_json(reader))["ok"]  # still open, and pings spent no rate limit
    writer.close()
    figures = await by.stop()
    record("hostile-pings.json", {**figures, "pings": pings, "pongs": len(pongs),
                                  "all_answered_ms": round(took * 1000, 1)})


async def test_unknown_ops_get_unknown_op_and_the_connection_stays(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory()
    by = await Bystander.start(server.url)
    c = await connect(server.url)
    for i, op in enumerate(["dance", "SUBSCRIBE", "publish ", "", "__class__", "_op_publish"]):
        await c.send_raw(json.dumps({"op": op, "room": "r", "id": 100 + i, "data": 1}))
        reply = await c.next_event()
        assert (reply["id"], reply["ok"], reply["error"]["code"]) == (100 + i, False,
                                                                      "unknown_op"), op
    for bad in ({"room": "r", "id": 200}, {"op": 5, "room": "r", "id": 201},
                {"op": ["publish"], "room": "r", "id": 202}):
        await c.send_raw(json.dumps(bad))
        assert (await c.next_event())["error"]["code"] == "unknown_op"
    assert (await c.call("publish", "r", data="still here"))["ok"]
    figures = await by.stop()
    record("hostile-unknown-ops.json", {**figures, "unknown_ops_answered": 9})


async def test_deep_or_huge_json_gets_an_error_reply_or_is_served_never_a_crash(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(max_message_size=512 * 1024)
    by = await Bystander.start(server.url)
    c = await connect(server.url)
    deep = 100_000
    bad = {
        "unclosed": "[" * deep,
        "closed": "[" * deep + "]" * deep,
        "objects": '{"a":' * (deep // 2) + "1" + "}" * (deep // 2),
        "deep data": '{"op":"publish","room":"r","id":1,"data":' + "[" * deep + "]" * deep + "}",
    }
    taken: dict[str, float] = {}
    for name, text in bad.items():
        started = time.perf_counter()
        await c.send_raw(text)
        reply = await c.next_event()
        taken[name] = round((time.perf_counter() - started) * 1000, 1)
        assert reply["ok"] is False and reply["error"]["code"] == "bad_json", (name, reply)
    # Nesting around the interpreter's limit: where decoding still works but encoding the
    # message does not (a band that depends on the stack), the publish is refused cleanly and
    # leaves no gap in the room's offsets.
    outcomes: dict[str, int] = {}
    for depth in range(850, 1001):
        data = "[" * depth + "]" * depth
        await c.send_raw(f'{{"op":"publish","room":"deep","id":{depth},"data":{data}}}')
        reply = await c.next_event()
        assert reply["id"] in (depth, None), reply
        code = "ok" if reply["ok"] else reply["error"]["code"]
        assert code in ("ok", "bad_json", "bad_request"), (depth, reply)
        outcomes[code] = outcomes.get(code, 0) + 1
    assert outcomes.get("ok", 0) > 0 and outcomes.get("bad_json", 0) > 0
    # Read from the node's broker: a history reply nests the deepest accepted messages three
    # levels further, past what a Python client (at its own stack depth) can decode.
    page = await server.node.broker.history("deep", 1000, 1 << 24)
    offsets = [int(re.search(rb'"offset":(\d+)', item).group(1)) for item in page.items]  # type: ignore[union-attr]
    assert offsets == list(range(1, outcomes["ok"] + 1))
    # Huge but under the limit: ~400 KB of JSON is served and delivered.
    sub = await connect(server.url)
    await sub.call("subscribe", "huge")
    huge = [f"item-{i:06d}" for i in range(30_000)]
    started = time.perf_counter()
    assert (await c.call("publish", "huge", data=huge, timeout=10))["ok"]
    [msg] = await sub.messages(1, timeout=10)
    huge_ms = round((time.perf_counter() - started) * 1000, 1)
    assert msg["data"] == huge
    assert (await c.call("publish", "r", data="still here"))["ok"]
    figures = await by.stop()
    record("hostile-json.json", {**figures, "bad_json_reply_ms": taken,
                                 "nesting_850_1000": outcomes, "huge_bytes": len(json.dumps(huge)),
                                 "huge_delivered_ms": huge_ms})


ABUSIVE_ROOMS: list[Any] = [
    "a" * 129, "a" * 60_000, "", "room\x00", "room\n", "room\r\nX-Injected: 1", "\x1b[31mred",
    "r\u043e\u043em",  # Cyrillic o's: looks like "room"
    "\uff52\uff4f\uff4f\uff4d",  # fullwidth "room"
    "room\u200b", "ro\u0301om", "room ", " room", "%2e%2e%2fetc", "C:\\rooms", "a*", "*",
    ["room"], {"room": 1}, 7, None, True,
]


async def test_abusive_room_names_get_invalid_room_and_traversal_strings_are_just_names(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(max_message_size=128 * 1024)
    by = await Bystander.start(server.url)
    c = await connect(server.url)
    for i, room in enumerate(ABUSIVE_ROOMS):
        for op in ("subscribe", "publish"):
            await c.send_raw(json.dumps({"op": op, "room": room, "id": i, "data": 1}))
            reply = await c.next_event()
            assert reply["error"]["code"] == "invalid_room", (room, reply)
    assert server.node.hub.rooms.keys() <= {"bystander"}
    # "." and "/" are allowed: "../x" is an opaque name, never a path, and is not normalised.
    rooms = ["x", "../x", "a/../x", "./x", "x/.", "//x", "../../etc/passwd"]
    for n, room in enumerate(rooms, 1):
        for _ in range(n):
            assert (await c.call("publish", room, data=room))["ok"]
    for n, room in enumerate(rooms, 1):
        hist = await c.call("history", room)
        assert hist["offset"] == n and {m["data"] for m in hist["messages"]} == {room}
    figures = await by.stop()
    record("hostile-rooms.json", {**figures, "invalid_names_refused": len(ABUSIVE_ROOMS) * 2,
                                  "traversal_names_distinct": len(rooms)})
