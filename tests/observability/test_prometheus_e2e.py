"""A real Prometheus scrapes a live instrumented server under load; every dashboard panel query
and every alert expression is evaluated through its HTTP API."""

from __future__ import annotations

import asyncio
import os
import re
import tracemalloc
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.conftest import Connect, ServerFactory
from tests.support.prom import PROMETHEUS, prometheus
from wsops.observability.alerts import AlertOptions, prometheus_rules
from wsops.observability.grafana_dashboards import build_dashboards, concrete, panel_queries

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None and not os.environ.get("CI"),
                       reason="prometheus missing (apt-get install prometheus)"),
]
METRIC = re.compile(r"\b(wsops_[a-z0-9_]+|process_[a-z0-9_]+|up)\b(?!\s*\()")


async def _traffic(server_url: str, connect: Connect, seconds: float) -> None:
    subs = [await connect(server_url) for _ in range(10)]
    for s in subs:
        await s.call("subscribe", "load")
    pub = await connect(server_url)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    i = 0
    while loop.time() < end:
        await pub.call("publish", "load", data={"n": i})
        i += 1
        if i % 25 == 0:  # connection churn: opens and normal closes
            c = await connect(server_url)
            await c.ws.close()
        await asyncio.sleep(0.02)


async def test_every_panel_and_alert_query_works_against_real_prometheus(
    tmp_path: Path, server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(rate_limit=1000, rate_burst=1000, heartbeat=1.0)
    admin = server.admin_url.removeprefix("http://")
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(prometheus_rules(AlertOptions())))
    tracemalloc.start()  # the memory dashboard's traced-memory panel: data only while profiling
    try:
        async with prometheus(tmp_path, [admin], [rules]) as prom:
            # Events some panels need: a refused handshake, a request answered with an error
            # and a drain (then cancelled).
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await connect(server.url + "?token=bad", headers={"Authorization": "Basic x"})
            stray = await connect(server.url)
            reply = await stray.call("unsubscribe", "never-joined")
            assert reply["error"]["code"] == "not_subscribed", reply
            await _traffic(server.url, connect, 8)
            server.node.drain(batch=1000, interval=0.0, deadline=5)
            await asyncio.sleep(2.5)  # scrapes (every 1 s) see the drain under way
            server.node.drainer.cancel()
            await _traffic(server.url, connect, 6)
            names = await prom.metric_names()
            failures = []
            queries = panel_queries(build_dashboards())
            assert len(queries) >= 30 and sum(q.event_only for q in queries) >= 3
            for q in queries:
                expr = concrete(q.expr, job="wsops")
                res = await prom.query(expr)
                if res["status"] != "success":
                    failures.append(f"{q.dashboard}/{q.panel}: {res.get('error')}: {expr}")
                    continue
                missing = {m for m in METRIC.findall(expr) if m not in names}
                if missing:
                    failures.append(f"{q.dashboard}/{q.panel}: unknown metrics {missing}")
                elif not res["data"]["result"]:
                    failures.append(f"{q.dashboard}/{q.panel}: no data: {expr}")
            for rule in prometheus_rules(AlertOptions())["groups"][0]["rules"]:
                res = await prom.query(rule["expr"])
                if res["status"] != "success":
                    failures.append(f"alert {rule['alert']}: {res.get('error')}")
                missing = {m for m in METRIC.findall(rule["expr"]) if m not in names}
                if missing:
                    failures.append(f"alert {rule['alert']}: unknown metrics {missing}")
            loaded = (await prom.api("rules"))["data"]["groups"][0]["rules"]
            assert len(loaded) == len(prometheus_rules(AlertOptions())["groups"][0]["rules"])
            assert {r["health"] for r in loaded} <= {"ok", "unknown"}
            assert not failures, "\n".join(failures)
    finally:
        tracemalloc.stop()
