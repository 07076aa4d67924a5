"""Property-based fuzzing of a live server with arbitrary frames over raw sockets.

Every frame gets a well-formed answer (JSON replies) or a documented close code, the server
stays up, and a bystander connection keeps publishing and receiving without a miss.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.procs import ServeProcess, start_serve
from tests.support.rawws import client_frame, open_raw, read_frame

DOCUMENTED_CLOSES = {1000, 1002, 1003, 1007, 1008, 1009}
SERVER_OPS = {"reply", "message", "join", "leave"}


class Bystander(threading.Thread):
    """Publishes to its own room and checks it receives each message, in its own loop."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.sent = 0
        self.received = 0
        self.errors: list[str] = []

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        async with aiohttp.ClientSession() as s, s.ws_connect(self.url) as ws:
            await ws.send_json({"op": "subscribe", "room": "bystander", "id": 0})
            self.ready.set()
            while not self.stop.is_set():
                self.sent += 1
                await ws.send_json(
                    {"op": "publish", "room": "bystander", "id": self.sent, "data": self.sent}
                )
                try:
                    async with asyncio.timeout(5):
                        while True:
                            msg = await ws.receive_json()
                            if msg.get("op") == "message":
                                if msg["data"] != self.received + 1:
                                    self.errors.append(f"out of order: {msg}")
                                self.received = msg["data"]
                                break
                except Exception as exc:
                    self.errors.append(repr(exc))
                    return
                await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[ServeProcess, Bystander]]:
    sp = start_serve("--allow-anonymous", "--max-message-size", "4096", "--rate-limit", "1000",
                     "--rate-burst", "1000")
    by = Bystander(sp.url)
    by.start()
    assert by.ready.wait(10)
    yield sp, by
    by.stop.set()
    by.join(10)
    sp.stop()
    assert by.errors == []
    assert by.received >= by.sent - 1 and by.received > 10


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=10,
)
ops = st.sampled_from(["subscribe", "unsubscribe", "publish", "presence", "history", "x", 1])
objects = st.fixed_dictionaries(
    {"op": ops},
    optional={
        "room": st.sampled_from(["r", "fuzz:1", "", "bad room", "a" * 200]) | json_values,
        "id": st.integers(-5, 2**60) | json_values,
        "data": json_values,
        "since": st.fixed_dictionaries(
            {"offset": st.integers(-2, 10), "epoch": st.text(max_size=8)}
        )
        | json_values,
        "limit": st.integers(-2, 2000) | json_values,
    },
)
payloads = (
    objects.map(lambda o: json.dumps(o).encode())
    | st.binary(max_size=64)
    | st.text(max_size=64).map(str.encode)
    | st.integers(4000, 6000).map(lambda n: b"[" + b"1," * (n // 2) + b"1]")
)
frames = st.tuples(st.sampled_from([0x1, 0x1, 0x1, 0x1, 0x2, 0x0, 0x3, 0x9, 0xA]), payloads,
                   st.booleans())


async def _throw(port: int, batch: list[tuple[int, bytes, bool]]) -> None:
    reader, writer, status = await open_raw(port)
    assert status == 101
    for opcode, payload, fin in batch:
        if opcode >= 0x8:
            payload = payload[:125]
        writer.write(client_frame(payload, opcode, fin or opcode >= 0x8))
    try:
        await writer.drain()
        async with asyncio.timeout(0.25):
            while True:
                op, data = await read_frame(reader)
                if op == 0x1:
                    obj = json.loads(data)
                    assert obj["op"] in SERVER_OPS
                    if obj["op"] == "reply" and not obj["ok"]:
                        assert set(obj["error"]) == {"code", "message"}
                elif op == 0x8:
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                    assert code in DOCUMENTED_CLOSES, code
                    break
                else:
                    assert op in (0x9, 0xA), op
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.mark.slow  # 150 examples against a live server, ~13 s
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(frames, min_size=1, max_size=6))
def test_arbitrary_frames_get_documented_outcomes(
    live: tuple[ServeProcess, Bystander], batch: list[tuple[int, bytes, bool]]
) -> None:
    sp, by = live
    asyncio.run(_throw(sp.port, batch))
    assert sp.proc.poll() is None
    assert by.errors == []
