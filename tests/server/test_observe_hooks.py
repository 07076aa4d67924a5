"""The node observer's per-frame and per-publish hooks (``served``, ``fanout``,
``publish_stored``): the compiled ones of ``_hooks.c`` and the Python methods they stand in
for, held to the same outcomes one call at a time and through a session serving frames."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from wsops.instrumentation.leanspans import LeanTracerProvider, SpanQueue
from wsops.instrumentation.metrics import WsMetrics
from wsops.instrumentation.pycounts import compiled_module
from wsops.instrumentation.tracing import Tracing
from wsops.server.broker.memory import MemoryBroker
from wsops.server.core.broker import Published
from wsops.server.core.hub import Conn, Hub
from wsops.server.core.identity import Identity
from wsops.server.core.protocol import Request
from wsops.server.core.session import Session
from wsops.server.observe import NodeObserver

BUILT = compiled_module() is not None
KINDS = [pytest.param(False, id="python"),
         pytest.param(True, id="compiled", marks=pytest.mark.skipif(
             not BUILT, reason="the extension was not built (no C compiler)"))]
TRACEPARENT = f"00-{'1' * 32}-{'2' * 16}-01"


def observer(compiled: bool, ratio: float | None = None) -> NodeObserver:
    metrics = WsMetrics()
    tracing = None if ratio is None else Tracing(
        LeanTracerProvider(SpanQueue(lambda body: None, b"", "", delay=3600)), ratio,
        random.Random(3).random)
    obs = NodeObserver(metrics, metrics.route("/ws"), tracing, compiled=compiled)
    assert (type(obs.served).__name__ == "OpTimer") is compiled
    assert (type(obs.flushed).__name__ == "FlushTimer") is compiled
    return obs


def message(frame: bytes = b"x" * 100, traceparent: str | None = None,
            accepted_at: float = 1.0) -> Published:
    return Published("r", 1, "e", frame, traceparent, accepted_at)


@pytest.mark.parametrize("compiled", KINDS)
def test_served_times_the_op_and_counts_its_error_code(compiled: bool) -> None:
    obs = observer(compiled)
    obs.served("publish", time.perf_counter() - 0.002, None)
    obs.served("publish", time.perf_counter(), "forbidden")
    obs.served("invalid", time.perf_counter(), "bad_request")
    hist = obs.ops["publish"]
    assert hist.count == 2 and hist.counts[0] == 1 and 0.002 <= hist.sum < 1.0
    assert obs.op_errors == {("publish", "forbidden"): 1, ("invalid", "bad_request"): 1}
    with pytest.raises(KeyError):
        obs.served("no such op", 0.0, None)
    served: Any = obs.served  # called wrongly on purpose
    with pytest.raises(TypeError):
        served("publish", 0.0)
    with pytest.raises(TypeError):
        served("publish", "soon", None)
    assert obs.ops["publish"].count == 2


@pytest.mark.parametrize("compiled", KINDS)
def test_fanout_counts_the_frame_per_subscriber_and_keeps_what_the_flush_times(
        compiled: bool) -> None:
    obs = observer(compiled)
    assert obs.fanout(message(accepted_at=0.0), 3) is False  # a replay: no latency
    assert obs.fanout(message(b"y" * 300, accepted_at=5.0), 2) is True
    assert obs.fanout(message(traceparent=TRACEPARENT, accepted_at=6.0), 1) is True  # no tracing
    size = obs.stats.size_out
    assert size.count == 6 and size.sum == 3 * 100 + 2 * 300 + 100
    assert obs._delivered == [5.0, 6.0] and obs._delivered_traced == []
    obs.flushed()
    assert obs.metrics.delivery_latency.count == 2 and obs._delivered == []
    with pytest.raises(ValueError, match=">= 0"):
        obs.fanout(message(), -1)
    fanout: Any = obs.fanout  # called wrongly on purpose
    with pytest.raises(AttributeError):
        fanout(object(), 1)


@pytest.mark.parametrize("compiled", KINDS)
def test_flushed_times_each_publish_of_the_tick_once(compiled: bool) -> None:
    obs = observer(compiled)
    obs.flushed()  # nothing this tick
    now = time.time()
    obs.fanout(message(accepted_at=now - 0.003), 5)
    obs.fanout(message(accepted_at=now - 0.0001), 5)
    obs.flushed()
    latency = obs.metrics.delivery_latency
    assert latency.count == 2 and latency.counts[0] == 1 and 0.0031 <= latency.sum < 1.0
    assert obs._delivered == []
    obs.flushed()
    assert latency.count == 2
    delivered: list[Any] = obs._delivered
    delivered.extend([now, "not a time"])  # what no broker makes: refused whole
    with pytest.raises(TypeError):
        obs.flushed()
    assert latency.count == 2 and len(obs._delivered) == 2


@pytest.mark.parametrize("compiled", KINDS)
def test_a_traced_fanout_and_store_go_through_the_spans(compiled: bool) -> None:
    obs = observer(compiled, ratio=1.0)
    req = Request("publish", 0, "r")
    handle = obs.publish_started(req)
    assert handle is not None and req.traceparent is not None
    started = time.perf_counter()
    assert obs.fanout(message(traceparent=req.traceparent, accepted_at=time.time()), 4) is True
    assert obs._delivered == [] and len(obs._delivered_traced) == 1
    assert obs._fanned is not None  # the publish's own fan-out span, still open
    obs.publish_stored(handle, message(traceparent=req.traceparent), started, True)
    assert obs._publishing is None and obs._fanned is None
    latency = obs.metrics.broker_publish_latency
    assert latency.count == 1 and set(latency.exemplars) == {latency.index(latency.sum)}
    obs.flushed()
    assert obs.metrics.delivery_latency.count == 1 and obs.metrics.delivery_latency.exemplars
    assert obs.published == {"client": 1, "api": 0}


@pytest.mark.parametrize("compiled", KINDS)
def test_untraced_stores_are_timed_and_counted_by_source(compiled: bool) -> None:
    obs = observer(compiled)
    obs.publish_stored(None, message(), time.perf_counter() - 0.003, True)
    latency = obs.metrics.broker_publish_latency
    assert latency.count == 1 and latency.sum >= 0.003
    stored: Any = obs.publish_stored  # called wrongly on purpose
    with pytest.raises(TypeError):
        stored(None, message(), time.perf_counter())
    assert obs.published == {"client": 1, "api": 0}


async def serve(compiled: bool, frames: list[str]) -> NodeObserver:
    """A session of ``u0`` in a room of three subscribers serving ``frames``."""
    metrics = WsMetrics()
    obs = NodeObserver(metrics, metrics.route("/ws"), None, compiled=compiled)
    hub, broker = Hub(observer=obs), MemoryBroker()
    broker.listener = hub
    await broker.watch("r")
    sent: list[bytes] = []

    class Sink:
        def write(self, data: bytes) -> None:
            sent.append(data)

        def writelines(self, data: list[bytes]) -> None:
            sent.extend(data)

        def is_closing(self) -> bool:
            return False

        def get_write_buffer_size(self) -> int:
            return 0

        def abort(self) -> None: ...

    conns = []
    for i in range(3):
        conn = Conn(hub, hub.new_id(), f"u{i}", Sink(), lambda *_: None, 1 << 20)
        hub.add(conn)
        hub.join_room(conn, "r")
        hub.finish_sync(conn, "r", 0, "")
        conns.append(conn)
    session = Session(conns[0], Identity("u0", ("r", "s")), hub, broker, max_rooms=8, rate=1e9,
                      burst=10**9, strikes=3, observer=obs)
    for frame in frames:
        await session.handle(frame)
        hub.flush()
    await obs.wrap_publish(broker.publish)("r", b'"from the api"', None, None, None)
    hub.flush()
    return obs


async def test_a_session_served_through_either_gives_the_same_figures() -> None:
    if not BUILT:
        pytest.skip("the extension was not built (no C compiler)")
    frames = [*(json.dumps({"op": "publish", "id": i, "room": "r", "data": {"n": "x" * i}})
                for i in range(30)),
              json.dumps({"op": "publish", "id": 99, "room": "secret", "data": 1}),  # forbidden
              "{not json", json.dumps({"op": "subscribe", "id": 100, "room": "s"}),
              json.dumps({"op": "history", "id": 101, "room": "r", "limit": 5})]
    python, compiled = await serve(False, frames), await serve(True, frames)

    def figures(obs: NodeObserver) -> dict[str, Any]:
        return {"ops": {op: h.count for op, h in obs.ops.items()},
                "errors": obs.op_errors, "published": obs.published,
                "size_out": obs.stats.size_out.counts, "bytes_out": obs.stats.size_out.sum,
                "deliveries": obs.metrics.delivery_latency.count,
                "stored": obs.metrics.broker_publish_latency.count}

    assert figures(compiled) == figures(python)
    assert figures(python)["published"] == {"client": 30, "api": 1}
    assert figures(python)["ops"]["publish"] == 31 and figures(python)["deliveries"] == 31
    assert figures(python)["errors"] == {("publish", "forbidden"): 1,
                                         ("invalid", "bad_json"): 1}
