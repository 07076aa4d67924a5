"""Every metric family moves as real traffic on a live bundled server says it should."""

from __future__ import annotations

import gzip

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Connect, ServerFactory
from tests.support.prom import promtool_check_metrics
from tests.support.rawws import client_frame, open_raw
from tests.support.scrape import scrape
from tests.support.waits import until


async def test_connection_families_follow_how_each_connection_ended(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(heartbeat=0.4, allowed_origins=("http://ok",))
    hub = server.node.hub
    normal = await connect(server.url, origin="http://ok")
    killed = await connect(server.url)
    for _ in range(3):  # drained later
        await connect(server.url)
    _reader, deaf_writer, status = await open_raw(server.port)  # never answers pings
    assert status == 101
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await connect(server.url, origin="http://evil")
    m = await scrape(server.admin_url)
    assert m.get("wsops_connections_open", route="/ws") == 6
    assert m.get("wsops_connections_opened_total", route="/ws") == 6
    assert m.get("wsops_handshake_failures_total", route="/ws", reason="origin") == 1

    await normal.ws.close()
    killed.ws._response.connection.transport.abort()  # type: ignore[union-attr]
    await until(lambda: len(hub.conns) == 4, what="the closed and the aborted connection gone")
    await until(lambda: len(hub.conns) == 3, what="the deaf connection's heartbeat timeout")
    await server.node.drain(batch=2, interval=0.05, deadline=5)
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await connect(server.url)
    m = await scrape(server.admin_url)
    assert m.get("wsops_draining") == 1
    assert m.get("wsops_connections_open", route="/ws") == 0
    assert m.get("wsops_connections_closed_total", route="/ws", code="1000") == 1
    assert m.get("wsops_connections_closed_total", route="/ws", code="1006") == 2
    assert m.get("wsops_connections_closed_total", route="/ws", code="1012") == 3
    assert m.get("wsops_handshake_failures_total", route="/ws", reason="draining") == 1
    assert m.get("wsops_connection_duration_seconds_count", route="/ws") == 6
    assert m.get("wsops_ping_rtt_seconds_count", route="/ws") >= 1
    assert m.get("wsops_heartbeat_timeouts_total", route="/ws") == 1
    deaf_writer.close()


async def test_message_families_count_what_the_clients_sent_and_received(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(rate_limit=1000, rate_burst=1000)
    subs = [await connect(server.url) for _ in range(4)]
    for s in subs:
        await s.call("subscribe", "news")
    pub = await connect(server.url)
    sent_bytes = 0
    for i in range(10):
        frame = f'{{"op":"publish","room":"news","id":{i},"data":"m{i}"}}'
        sent_bytes += len(frame)
        await pub.send_raw(frame)
    for s in subs:
        await s.messages(10)

    async def sent_all() -> bool:
        got = await scrape(server.admin_url)
        return got.get("wsops_messages_total", route="/ws", direction="out", type="text") >= 54

    await until(sent_all, what="54 messages out counted")
    m = await scrape(server.admin_url)
    frames_in = 4 + 10  # subscribes + publishes
    assert m.get("wsops_messages_total", route="/ws", direction="in", type="text") == frames_in
    assert m.get("wsops_message_size_bytes_count", route="/ws", direction="in") == frames_in
    assert m.get("wsops_message_bytes_total", route="/ws", direction="in") >= sent_bytes
    # out: 4 subscribe replies + 10 publish replies + 40 deliveries
    assert m.get("wsops_messages_total", route="/ws", direction="out", type="text") == 54
    assert m.get("wsops_message_bytes_total", route="/ws", direction="out") > 40 * 60
    assert m.get("wsops_message_size_bytes_count", route="/ws", direction="out") == 40
    assert m.get("wsops_delivery_latency_seconds_count") == 10
    assert m.get("wsops_delivery_latency_seconds_bucket", le="0.01") >= 1
    assert m.get("wsops_broker_publish_latency_seconds_count") == 10
    # Every frame is timed once, per op; the route's handler latency is their sum.
    assert m.get("wsops_handler_latency_seconds_count", route="/ws") == frames_in
    ops = ("subscribe", "publish")
    assert m.get("wsops_handler_latency_seconds_sum", route="/ws") == pytest.approx(
        sum(m.get("wsops_operation_duration_seconds_sum", op=op) for op in ops))
    assert m.get("wsops_handler_latency_seconds_bucket", route="/ws", le="+Inf") == frames_in
    for le in ("0.0005", "0.005", "+Inf"):
        assert m.get("wsops_handler_latency_seconds_bucket", route="/ws", le=le) == sum(
            m.get("wsops_operation_duration_seconds_bucket", op=op, le=le) for op in ops)
    assert m.get("wsops_broker_up") == 1
    assert m.get("wsops_build_info", version=__import__("wsops").__version__) == 1


async def test_rate_limited_family(server_factory: ServerFactory, connect: Connect) -> None:
    server = await server_factory(rate_limit=2, rate_burst=2, rate_limit_strikes=100)
    c = await connect(server.url)
    for i in range(5):
        await c.send_raw(f'{{"op":"presence","room":"r","id":{i}}}')
    replies = [await c.next_event() for _ in range(5)]
    refused = sum(not r["ok"] for r in replies)
    assert refused >= 3
    m = await scrape(server.admin_url)
    assert m.get("wsops_rate_limited_messages_total", route="/ws") == refused


async def test_slow_consumer_family(server_factory: ServerFactory, connect: Connect) -> None:
    server = await server_factory(send_queue_bytes=64 * 1024, rate_limit=10_000, rate_burst=1000)
    _reader, writer, _status = await open_raw(server.port, rcvbuf=4096)
    writer.write(client_frame(b'{"op":"subscribe","room":"big","id":1}'))
    await writer.drain()
    await until(lambda: "big" in server.node.hub.rooms, what="the raw subscriber in the room")
    blob = "x" * 60_000
    pub = await connect(server.url)
    for _ in range(300):  # more than the kernel's socket buffers hold
        await pub.call("publish", "big", data=blob)
        if server.node.hub.stats.slow_consumers:
            break
    await until(lambda: server.node.hub.stats.slow_consumers == 1,
                what="the slow consumer disconnected")
    m = await scrape(server.admin_url)
    assert m.get("wsops_slow_consumer_disconnects_total", route="/ws") == 1
    assert m.get("wsops_connections_closed_total", route="/ws", code="4000") == 1
    writer.close()


async def test_runtime_families_and_openmetrics_exemplars(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory()
    c = await connect(server.url)
    await c.call("subscribe", "r")
    m = await scrape(server.admin_url)
    for name in ("process_resident_memory_bytes", "process_open_fds", "process_max_fds"):
        assert m.get(name) > 0, name
    # RSS above the process's at start, per connection: what one connection added, which the
    # allocator may well have had at hand already (0), never the process's whole RSS.
    assert 0 <= m.get("wsops_memory_per_connection_bytes") < \
        m.get("process_resident_memory_bytes") / 2
    assert m.get("process_cpu_seconds_total") > 0
    assert "wsops_event_loop_lag_seconds" in m.families
    assert "wsops_gc_collections" in m.families
    om = await scrape(server.admin_url, openmetrics=True)
    assert om.text.rstrip().endswith("# EOF")
    assert om.get("wsops_connections_open", route="/ws") == 1


async def test_node_families_count_rooms_users_ops_errors_and_resumes(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(rate_limit=1000, rate_burst=1000)
    alice1, alice2, bob = [await connect(server.url) for _ in range(3)]
    first = await alice1.call("subscribe", "a")
    await alice1.call("subscribe", "b")
    await bob.call("subscribe", "a")
    for n in range(3):
        assert (await bob.call("publish", "a", data=n))["ok"]
    assert not (await bob.call("unsubscribe", "nowhere"))["ok"]
    await alice2.send_raw("{not json")
    await alice2.next_event()
    resumed = await alice2.call("subscribe", "a", since={"offset": 1, "epoch": first["epoch"]})
    gap = await alice2.call("subscribe", "b", since={"offset": 5, "epoch": "gone"})
    assert resumed["recovered"] is True and gap["recovered"] is False
    m = await scrape(server.admin_url)
    # Anonymous: every connection is its own user.
    assert (m.get("wsops_rooms"), m.get("wsops_subscriptions"), m.get("wsops_users")) == (2, 5, 3)
    assert m.get("wsops_operation_duration_seconds_count", op="publish") == 3
    assert m.get("wsops_operation_duration_seconds_count", op="subscribe") == 5
    assert m.get("wsops_operation_duration_seconds_count", op="unsubscribe") == 1
    assert m.get("wsops_operation_duration_seconds_count", op="invalid") == 1
    assert m.get("wsops_operation_duration_seconds_sum", op="publish") > 0
    assert m.get("wsops_operation_errors_total", op="unsubscribe", code="not_subscribed") == 1
    assert m.get("wsops_operation_errors_total", op="invalid", code="bad_json") == 1
    assert m.sum("wsops_operation_errors_total") == 2
    assert m.get("wsops_resumes_total", recovered="true") == 1
    assert m.get("wsops_resumes_total", recovered="false") == 1
    await alice1.close()
    await until(lambda: len(server.node.hub.conns) == 2, what="alice1 gone")
    m = await scrape(server.admin_url)
    assert (m.get("wsops_rooms"), m.get("wsops_subscriptions"), m.get("wsops_users")) == (2, 3, 2)


async def test_metrics_endpoint_gzips_filters_by_name_and_passes_promtool(
    server_factory: ServerFactory, connect: Connect
) -> None:
    """/metrics is prometheus-client's own aiohttp handler: gzip when asked, name[] to read
    some series, and an exposition promtool's linter has nothing to say about (a busy node:
    every family has samples)."""
    server = await server_factory()
    sub, pub = await connect(server.url), await connect(server.url)
    await sub.call("subscribe", "r")
    for n in range(5):
        await pub.call("publish", "r", data=n)
    await sub.messages(5)
    await pub.send_raw("{not json")
    url = server.admin_url + "/metrics"
    async with (aiohttp.ClientSession(auto_decompress=False) as s,
                s.get(url, headers={"Accept-Encoding": "gzip"}) as r):
        assert r.headers["Content-Encoding"] == "gzip"
        text = gzip.decompress(await r.read()).decode()
    some_url = url + "?name[]=wsops_rooms&name[]=process_open_fds"
    async with aiohttp.ClientSession() as s, s.get(some_url) as r:
        some = await r.text()
    names = {f.name for f in text_string_to_metric_families(some)}
    assert names == {"wsops_rooms", "process_open_fds"}
    assert "wsops_operation_duration_seconds_bucket" in text
    assert promtool_check_metrics(text) == ""
