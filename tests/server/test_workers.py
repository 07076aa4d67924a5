"""``wsops serve --workers N``: one port shared by worker processes, acting as one node.

The end-to-end tests run a real supervisor, its workers and its private redis-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import re
import signal
import subprocess
import time
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, exposition
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics import parser as om_parser
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from tests.conftest import Connect
from tests.support.procs import ServeProcess, start_serve
from tests.support.prom import promtool_check_metrics
from tests.support.redisproc import redis_server_binary
from tests.support.runcli import cli
from tests.support.waits import until
from tests.support.wsclient import RawClient
from wsops.admin.aggregate import (
    merge_debug,
    merge_drain,
    merge_expositions,
    merge_flow,
    merge_stats,
)
from wsops.cli import app

needs_redis = pytest.mark.skipif(redis_server_binary() is None, reason="needs redis-server")


# -- pure merging ---------------------------------------------------------------------------


def _exposition(n: float, openmetrics: bool = False) -> str:
    reg = CollectorRegistry()
    Counter("demo_messages", "Messages.", ["route"], registry=reg).labels("/ws").inc(n)
    Gauge("demo_open", 'Open "now".\nSecond line.', registry=reg).set(n)
    Histogram("demo_latency_seconds", "Latency.", buckets=(0.1, 1.0), registry=reg).observe(n)
    gen = om_exposition.generate_latest if openmetrics else exposition.generate_latest
    return bytes(gen(reg)).decode()


def test_merged_metrics_label_each_worker_and_describe_each_family_once() -> None:
    text = merge_expositions([("0", _exposition(1)), ("1", _exposition(3))]).decode()
    for name in ("demo_messages_total", "demo_open", "demo_latency_seconds"):
        assert text.count(f"# HELP {name} ") == 1 and text.count(f"# TYPE {name} ") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    opened = {s.labels["worker"]: s.value for s in families["demo_open"].samples}
    assert opened == {"0": 1.0, "1": 3.0}
    assert families["demo_open"].documentation == 'Open "now".\nSecond line.'
    total = {(s.labels["worker"], s.labels["route"]): s.value
             for s in families["demo_messages"].samples if s.name == "demo_messages_total"}
    assert total == {("0", "/ws"): 1.0, ("1", "/ws"): 3.0}
    buckets = [s for s in families["demo_latency_seconds"].samples if s.name.endswith("_bucket")]
    assert {(s.labels["worker"], s.labels["le"]) for s in buckets} == {
        (w, le) for w in "01" for le in ("0.1", "1.0", "+Inf")}


def _room(room: str, n: int, since: float = 10.0, capped: bool = False) -> dict[str, Any]:
    return {"room": room, "since": since, "msgs_in": n, "bytes_in": 10 * n, "msgs_out": 2 * n,
            "bytes_out": 20 * n, "publishers": 1, "publishers_capped": capped,
            "subscribers": 2}


def test_merged_flow_sums_a_room_across_workers_and_keeps_the_busiest() -> None:
    merged = merge_flow([
        {"generated_at": 5.0, "tracked": 2, "forgotten": 1,
         "rooms": [_room("a", 10, since=3.0), _room("b", 1)]},
        {"generated_at": 7.0, "tracked": 2, "forgotten": 0,
         "rooms": [_room("a", 5, capped=True), _room("c", 8)]},
    ], top=2)
    assert [r["room"] for r in merged["rooms"]] == ["a", "c"]
    a = merged["rooms"][0]
    assert (a["msgs_in"], a["bytes_out"], a["publishers"], a["subscribers"]) == (15, 300, 2, 4)
    assert a["since"] == 3.0 and a["publishers_capped"] is True
    assert (merged["generated_at"], merged["tracked"], merged["forgotten"]) == (7.0, 4, 1)
    assert merge_flow([], top=5) == {"generated_at": 0.0, "tracked": 0, "forgotten": 0,
                                     "rooms": []}


def test_merged_debug_state_keeps_each_target_once_with_the_most_time_left() -> None:
    t = {"id": "user:a", "kind": "user", "value": "a", "started_at": 1.0}
    merged = merge_debug([
        {"traced": True, "targets": [{**t, "seconds_left": 5.0}]},
        {"traced": False, "targets": [{**t, "seconds_left": 9.0}]},
    ])
    assert merged["targets"] == [{**t, "seconds_left": 9.0}] and merged["traced"] is False
    assert merge_debug([])["traced"] is False


def test_merged_openmetrics_parses_strictly() -> None:
    text = merge_expositions([("0", _exposition(1, True)), ("1", _exposition(2, True))],
                             openmetrics=True).decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in
                om_parser.text_string_to_metric_families(text)}  # type: ignore[no-untyped-call]
    assert {s.labels["worker"] for s in families["demo_messages"].samples} == {"0", "1"}


def test_stats_and_drain_are_summed_over_workers() -> None:
    a: dict[str, Any] = {"connections": 3, "messages_in_per_second": 1.5, "rss_bytes": 100.0,
         "memory_per_connection_bytes": 10.0, "loop_lag_p99_seconds": 0.002,
         "connections_by_route": {"/ws": 3}, "draining": False,
         "drain": {"state": "drained", "total": 3, "closed": 3, "remaining": 0}}
    b: dict[str, Any] = {"connections": 1, "messages_in_per_second": 0.5, "rss_bytes": 50.0,
         "memory_per_connection_bytes": 30.0, "loop_lag_p99_seconds": 0.004,
         "connections_by_route": {"/ws": 1}, "draining": True,
         "drain": {"state": "draining", "total": 2, "closed": 1, "remaining": 1}}
    out = merge_stats([a, b])
    assert out["connections"] == 4 and out["messages_in_per_second"] == 2.0
    assert out["rss_bytes"] == 150.0 and out["memory_per_connection_bytes"] == 15.0
    assert out["loop_lag_p99_seconds"] == 0.004 and out["connections_by_route"] == {"/ws": 4}
    assert out["draining"] is True
    assert out["drain"]["state"] == "draining" and out["drain"]["remaining"] == 1
    assert merge_drain([a["drain"], a["drain"]])["state"] == "drained"
    assert "closes" not in out["drain"]  # stats carry no log; GET /admin/drain does:
    logs = merge_drain([
        {"state": "drained", "started_at": 50.25, "closes": [{"t": 0.0, "batches": 1,
                                                              "sent": 2}]},
        {"state": "drained", "started_at": 50.0, "closes": [{"t": 0.0, "batches": 1,
                                                             "sent": 3},
                                                            {"t": 0.5, "batches": 1,
                                                             "sent": 1}]}])
    assert logs["started_at"] == 50.0 and logs["closes"] == [
        {"t": 0.0, "batches": 1, "sent": 3}, {"t": 0.25, "batches": 1, "sent": 2},
        {"t": 0.5, "batches": 1, "sent": 1}]
    assert abs(logs["now"] - time.time()) < 60


def test_workers_without_redis_server_or_broker_exit_2_with_advice(tmp_path: Any) -> None:
    result = CliRunner().invoke(app, ["serve", "--workers", "2", "--allow-anonymous",
                                      "--port", "0", "--admin-port", "-1"],
                                env={"PATH": str(tmp_path)})
    assert result.exit_code == 2
    assert "install redis-server or pass --broker redis://" in re.sub(r"\s+", " ", result.output)


def test_serve_help_explains_workers() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert "--workers" in result.output and "SO_REUSEPORT" in result.output


# -- a real supervisor ---------------------------------------------------------------------


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


async def _open_per_worker(sp: ServeProcess) -> dict[str, float]:
    _, text = await _get(sp.admin_url + "/metrics")
    for fam in text_string_to_metric_families(text):
        if fam.name == "wsops_connections_open":
            return {s.labels["worker"]: s.value for s in fam.samples}
    return {}


async def _one_per_worker(sp: ServeProcess, connect: Connect) -> list[RawClient]:
    """Connect until each of the two workers holds a client; returns [on 0, on 1]."""
    found: dict[str, RawClient] = {}
    before = await _open_per_worker(sp)
    for _ in range(30):
        client = await connect(sp.url)
        after = await _open_per_worker(sp)
        grown = [w for w, n in after.items() if n > before.get(w, 0)]
        assert len(grown) == 1
        found.setdefault(grown[0], client)
        before = after
        if len(found) == 2:
            return [found["0"], found["1"]]
    raise AssertionError(f"the kernel never picked both workers: {before}")


@pytest.fixture
async def node() -> Any:
    if redis_server_binary() is None:
        pytest.skip("needs redis-server")
    sp = await asyncio.to_thread(start_serve, "--workers", "2", "--allow-anonymous",
                                 "--drain-interval", "0.1", timeout=20)
    yield sp
    if sp.proc.poll() is None:  # a graceful stop, so the private redis-server goes too
        sp.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(sp.proc.wait, 15)
    await asyncio.to_thread(sp.stop)


@needs_redis
async def test_connections_spread_over_workers_and_metrics_label_each(
    node: ServeProcess, connect: Connect
) -> None:
    clients = [await connect(node.url) for _ in range(40)]
    per_worker = await _open_per_worker(node)
    assert set(per_worker) == {"0", "1"} and all(per_worker.values())
    assert sum(per_worker.values()) == 40
    status, text = await _get(node.admin_url + "/metrics")
    assert status == 200 and text.count("# TYPE wsops_connections_open ") == 1
    assert 'wsops_worker_up{worker="1"} 1.0' in text
    async with aiohttp.ClientSession() as s:
        async with s.get(node.admin_url + "/metrics", headers={
                "Accept": "application/openmetrics-text; version=1.0.0"}) as r:
            om = await r.text()
        async with s.get(node.admin_url + "/admin/stats") as r:
            stats = await r.json()
        async with s.get(node.admin_url + "/admin/connections") as r:
            conns = await r.json()
    om_families = om_parser.text_string_to_metric_families(om)  # type: ignore[no-untyped-call]
    assert any(f.name == "wsops_connections_opened" for f in om_families)
    assert stats["connections"] == 40 and stats["ready"] is True
    assert [w["connections"] for w in stats["workers"]] == [per_worker["0"], per_worker["1"]]
    assert conns["total"] == 40
    # Busy (every family has samples), then: the node's merged exposition passes promtool's
    # linter, is gzipped when asked, and name[] reads some series of every worker.
    await clients[0].call("subscribe", "r")
    assert (await clients[1].call("publish", "r", data=1))["ok"]
    await clients[0].messages(1)
    async with (aiohttp.ClientSession(auto_decompress=False) as s,
                s.get(node.admin_url + "/metrics", headers={"Accept-Encoding": "gzip"}) as r):
        assert r.headers["Content-Encoding"] == "gzip"
        busy = gzip.decompress(await r.read()).decode()
    assert promtool_check_metrics(busy) == ""
    assert "wsops_operation_duration_seconds_bucket" in busy
    _, some = await _get(node.admin_url + "/metrics?name[]=wsops_users&name[]=wsops_worker_up")
    samples = [(s.name, s.labels["worker"]) for f in text_string_to_metric_families(some)
               for s in f.samples]
    assert sorted(samples) == [("wsops_users", "0"), ("wsops_users", "1"),
                               ("wsops_worker_up", "0"), ("wsops_worker_up", "1")]
    for c in clients:
        await c.close()


@needs_redis
async def test_a_drain_of_every_worker_logs_each_workers_batches_as_the_nodes(
    node: ServeProcess, connect: Connect
) -> None:
    clients = [await connect(node.url) for _ in range(24)]
    per_worker = await _open_per_worker(node)
    result = await cli("drain", node.admin_url, "--batch", "5", "--interval", "0.1",
                       "--deadline", "15", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["drain"]["closed"] == 24 and out["batches_from"] == "node"
    # Each worker closes its own in batches of 5: the node's log holds every one of them.
    want = sum(-(-n // 5) for n in per_worker.values())
    assert out["drain"]["batches"] == want == sum(b.get("batches", 1) for b in out["batches"])
    assert sum(b["sent"] for b in out["batches"]) == 24
    times = [b["t"] for b in out["batches"]]
    assert times == sorted(times) and times[0] < 1.0
    for c in clients:
        await c.close()


@needs_redis
async def test_a_room_spans_workers(node: ServeProcess, connect: Connect) -> None:
    a, b = await _one_per_worker(node, connect)
    assert (await a.call("subscribe", "lobby", presence=True))["ok"]
    me = (await a.next_event())["user"]
    assert (await b.call("subscribe", "lobby"))["ok"]
    joined = await a.next_event()
    assert joined["op"] == "join"
    assert sorted((await a.call("presence", "lobby"))["users"]) == sorted([me, joined["user"]])
    assert (await a.call("presence", "lobby"))["users"] == (
        await b.call("presence", "lobby"))["users"]
    assert (await a.call("publish", "lobby", data="from 0"))["ok"]
    assert (await b.call("publish", "lobby", data="from 1"))["ok"]
    for c in (a, b):
        got = await c.messages(2)
        assert [(m["data"], m["offset"]) for m in got] == [("from 0", 1), ("from 1", 2)]
    ha, hb = (await a.call("history", "lobby")), (await b.call("history", "lobby"))
    assert ha["messages"] == hb["messages"] and ha["epoch"] == hb["epoch"]
    assert [m["data"] for m in ha["messages"]] == ["from 0", "from 1"]


@needs_redis
async def test_sigterm_drains_every_worker_and_leaves_no_process(
    node: ServeProcess, connect: Connect
) -> None:
    clients = await _one_per_worker(node, connect)
    clients += [await connect(node.url) for _ in range(10)]
    children = psutil.Process(node.proc.pid).children(recursive=True)
    assert len(children) == 3  # two workers and the private redis-server
    node.proc.send_signal(signal.SIGTERM)
    codes = [await c.wait_closed(timeout=10) for c in clients]
    assert set(codes) == {1012}
    assert await asyncio.to_thread(node.proc.wait, 15) == 0
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    out = node.proc.stdout.read().decode() if node.proc.stdout else ""
    assert "worker-0 wsops.serve drained" in out and "worker-1 wsops.serve drained" in out


@needs_redis
async def test_a_worker_that_dies_is_restarted(node: ServeProcess) -> None:
    _, text = await _get(node.admin_url + "/admin/stats")
    victim = json.loads(text)["workers"][1]["pid"]
    os.kill(victim, signal.SIGKILL)

    async def restarted() -> dict[str, Any] | None:
        _, text = await _get(node.admin_url + "/admin/stats")
        row: dict[str, Any] = json.loads(text)["workers"][1]
        if not row.get("up"):  # "down", or "unreachable" until the supervisor notices
            assert f"worker 1 {row['error']}" in json.loads(text)["not_ready_reasons"]
        return row if row.get("up") and row["pid"] != victim else None

    row = await until(restarted, 10.0, step=0.1, what="worker 1 up again with a new pid")
    assert row["restarts"] == 1 and row["up"]
    assert (await _get(node.admin_url + "/readyz"))[0] == 200
    assert 'wsops_worker_restarts_total{worker="1"} 1.0' in (
        await _get(node.admin_url + "/metrics"))[1]


@needs_redis
async def test_a_killed_supervisor_takes_its_workers_and_redis_along(node: ServeProcess) -> None:
    children = psutil.Process(node.proc.pid).children(recursive=True)
    assert len(children) == 3
    node.proc.kill()  # no chance to clean up: workers see stdin close, redis its parent die
    _, alive = await asyncio.to_thread(psutil.wait_procs, children, 10)
    assert alive == []


@needs_redis
async def test_the_debug_switch_reaches_every_worker_and_turns_off_on_all(
    node: ServeProcess,
) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(node.admin_url + "/admin/debug",
                          json={"room": "news", "seconds": 60}) as r:
            started = await r.json()
        assert r.status == 200 and started["workers_reached"] == 2
        assert started["target"]["id"] == "room:news"
        async with s.post(node.admin_url + "/admin/debug", json={"room": ""}) as r:
            assert r.status == 400 and "1 to 256 characters" in await r.text()
        for w in (await (await s.get(node.admin_url + "/admin/stats")).json())["workers"]:
            async with s.get(w["admin_url"] + "/admin/debug") as r:
                assert [t["id"] for t in (await r.json())["targets"]] == ["room:news"]
        async with s.post(node.admin_url + "/admin/debug/stop", json={}) as r:
            stopped = await r.json()
        assert stopped["stopped"] == ["room:news"] and stopped["targets"] == []
        async with s.get(node.admin_url + "/admin/flow") as r:  # the workers' flows, merged
            assert r.status == 200 and (await r.json())["rooms"] == []
        async with s.get(node.admin_url + "/admin/tap", params={"room": "r"}) as r:
            says = await r.text()
        assert r.status == 501 and "tap each worker's own admin listener" in says
        assert "worker 0: http://127.0.0.1:" in says and "worker 1: http://127.0.0.1:" in says
