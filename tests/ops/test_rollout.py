"""``wsops rollout`` on a real fleet: two ``wsops serve`` nodes on one Redis, a subscriber and
a publisher on each, upgraded one after the other by a restart command while messages flow;
a broken "new version" that fails its canary's gate and is rolled back; and the gates read
from a real Prometheus scraping the nodes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.ports import free_port
from tests.support.prom import prometheus
from tests.support.redisproc import RedisProc, broker_url
from tests.support.reports import check_report
from tests.support.restartnode import kill_all, restart_template, run_rollout
from tests.support.waits import until
from wsops.client import Client, Message, ServerError

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Fleet:
    dir: Path
    admin_urls: list[str]
    urls: list[str]
    received: list[list[Any]] = field(default_factory=list)
    acked: list[Any] = field(default_factory=list)
    refused: int = 0

    def restart(self, *extra: str) -> str:
        return restart_template(self.dir, *extra)

    async def stats(self, admin_url: str) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(admin_url + "/admin/stats") as r:
            return dict(await r.json())

    async def rollout(self, *args: str) -> tuple[int, dict[str, Any]]:
        return await run_rollout(*self.admin_urls, *args, cwd=ROOT)


def _keep_data(into: list[Any], message: Message) -> None:
    into.append(message.data)


def _has_all(got: list[Any], acked: list[Any]) -> bool:
    return all(m in got for m in acked)


async def _ready(admin_url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(admin_url + "/readyz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


@contextlib.asynccontextmanager
async def fleet(redis_proc: RedisProc, tmp_path: Path) -> AsyncIterator[Fleet]:
    """Two nodes (started by the restart command itself), a subscriber of room "r" and a
    publisher on each; publishing goes on until the context ends."""
    nodes = [(free_port(), free_port()) for _ in range(2)]
    f = Fleet(tmp_path, [f"http://127.0.0.1:{a}" for _, a in nodes],
              [f"ws://127.0.0.1:{p}/ws" for p, _ in nodes])
    for port, admin in nodes:
        (tmp_path / f"{admin}.args").write_text(json.dumps([
            "--allow-anonymous", "--broker", broker_url(redis_proc), "--port", str(port),
            "--admin-port", str(admin), "--drain-spread", "0.3", "--drain-batch", "1000",
            "--drain-interval", "0"]))
    clients: list[Client] = []
    stop = asyncio.Event()
    try:
        for admin_url in f.admin_urls:
            proc = await asyncio.create_subprocess_shell(
                f.restart().replace("{admin_url}", admin_url), cwd=ROOT)
            assert await proc.wait() == 0
        for admin_url in f.admin_urls:
            await until(partial(_ready, admin_url), 30, what=f"{admin_url} ready")
        for url in f.urls:
            got: list[Any] = []
            f.received.append(got)
            sub = Client(url, backoff_cap=0.5, on_message=partial(_keep_data, got))
            clients.append(sub)
            await sub.connect(timeout=10)
            await sub.subscribe("r")

        async def publish(url: str, who: int) -> None:
            pub = Client(url, backoff_cap=0.5, request_timeout=None)
            clients.append(pub)
            await pub.connect(timeout=10)
            k = 0
            while not stop.is_set():
                k += 1
                try:
                    await pub.publish("r", [who, k])
                    f.acked.append([who, k])
                except ServerError:  # refused (the broken version's rate limit): not stored
                    f.refused += 1
                await asyncio.sleep(0.05)

        publishers = [asyncio.create_task(publish(u, i)) for i, u in enumerate(f.urls)]
        await until(lambda: len(f.acked) >= 10, 10, what="publishing")
        yield f
        stop.set()
        await asyncio.wait_for(asyncio.gather(*publishers), 30)
    finally:
        stop.set()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        await asyncio.to_thread(kill_all, tmp_path)


@pytest.mark.slow
async def test_a_rollout_upgrades_every_node_while_messages_flow_and_loses_none(
        redis_proc: RedisProc, tmp_path: Path) -> None:
    async with fleet(redis_proc, tmp_path) as f:
        before = [await f.stats(u) for u in f.admin_urls]
        page = tmp_path / "rollout.html"
        code, report = await f.rollout("--restart", f.restart(), "--bake", "1",
                                       "--canary-bake", "2", "--settle", "10",
                                       "--state", str(tmp_path / "state.json"),
                                       "--report", str(page))
        assert code == 0, report
        assert report["result"] == "upgraded" and report["done"] == f.admin_urls
        after = [await f.stats(u) for u in f.admin_urls]
        assert all(a["started_at"] != b["started_at"] for a, b in zip(after, before, strict=True))
        steps = [s["step"] for s in report["steps"]]
        assert steps.count("ready") == 2 and steps.count("done") == 2
        assert json.loads((tmp_path / "state.json").read_text())["done"] == f.admin_urls
        # --report: each node's connections went (to 0, or the node away: None) and came back.
        series = {c["url"]: c["connections"] for c in report["connections"]}
        assert set(series) == set(f.admin_urls)
        for seen in series.values():
            assert seen[0] and seen[-1] and (0 in seen or None in seen), seen
        await check_report(
            page, report, ["summary", "timeline", "gates", "steps", "command"],
            "report-rollout.png", readme=True,
            must_show=["/connections/0/connections", "/result", "/steps/0/at", "/steps/3/at"])
        acked_before = len(f.acked)
        await until(lambda: len(f.acked) >= acked_before + 10, 10, what="publishing after")
    # Every acknowledged publish reached both subscribers, once each.
    for got in f.received:
        await until(partial(_has_all, got, f.acked), 15,
                    what="every acknowledged publish delivered")
        assert len(got) == len({tuple(m) for m in got}), "a message was delivered twice"
    print(f"\n{len(f.acked)} publishes acknowledged during the rollout, "
          f"{[len(g) for g in f.received]} received, 0 lost")


@pytest.mark.slow
async def test_a_broken_version_stops_at_the_canary_and_is_rolled_back(
        redis_proc: RedisProc, tmp_path: Path) -> None:
    async with fleet(redis_proc, tmp_path) as f:
        before = [await f.stats(u) for u in f.admin_urls]
        # The "new version" refuses most publishes (a rate limit far too low).
        broken = f.restart("--rate-limit", "1", "--rate-burst", "2",
                           "--rate-limit-strikes", "1000000")
        code, report = await f.rollout("--restart", broken, "--rollback", f.restart(),
                                       "--bake", "1", "--canary-bake", "2", "--settle", "10")
        assert code == 3, report
        assert report["result"] == "stopped" and report["done"] == []
        assert report["failed"] == f.admin_urls[0]
        assert "error_rate < 1%" in report["reason"]
        assert [s["step"] for s in report["steps"]][-2:] == ["rollback", "rollback"]
        assert report["steps"][-1]["text"].startswith("ready: version")
        # Rolled back: a new process of the good version; the second node never touched.
        await until(lambda: _ready(f.admin_urls[0]), 30, what="the rolled-back node ready")
        first, second = [await f.stats(u) for u in f.admin_urls]
        assert first["started_at"] != before[0]["started_at"]
        assert second["started_at"] == before[1]["started_at"]
        acked = len(f.acked)
        await until(lambda: len(f.acked) >= acked + 20, 15, what="publishes accepted again")


@pytest.mark.slow
async def test_a_batch_is_refused_without_headroom_and_upgraded_together_without_the_check(
        redis_proc: RedisProc, tmp_path: Path) -> None:
    async with fleet(redis_proc, tmp_path) as f:
        code, report = await f.rollout("--restart", f.restart(), "--batch", "2")
        assert code == 1 and report["done"] == []
        assert "0 free connection places" in report["reason"]  # nobody left to take them
        code, report = await f.rollout("--restart", f.restart(), "--batch", "2", "--bake", "1",
                                       "--canary-bake", "1", "--settle", "10",
                                       "--no-headroom-check")
        assert code == 0, report
        steps = [(s["step"], s["node"]) for s in report["steps"]]
        drains = [i for i, (step, _) in enumerate(steps) if step == "drain"]
        bakes = [i for i, (step, _) in enumerate(steps) if step == "bake"]
        assert max(drains) < min(bakes)  # both drained before the one bake of the batch
        assert report["done"] == f.admin_urls
        acked_before = len(f.acked)
        await until(lambda: len(f.acked) >= acked_before + 10, 15, what="publishing after")
    for got in f.received:  # the whole fleet was down a moment: resumed, nothing lost
        await until(partial(_has_all, got, f.acked), 15,
                    what="every acknowledged publish delivered")
        assert len(got) == len({tuple(m) for m in got})


@pytest.mark.slow
async def test_gates_read_from_prometheus_stop_on_what_it_saw_and_pass_on_a_healthy_fleet(
        redis_proc: RedisProc, tmp_path: Path) -> None:
    (tmp_path / "prom").mkdir()
    async with fleet(redis_proc, tmp_path) as f, prometheus(
            tmp_path / "prom", [u.removeprefix("http://") for u in f.admin_urls]) as prom:

        async def scraped() -> bool:
            got = await prom.query("count by (instance) (wsops_delivery_latency_seconds_bucket)")
            return len(got["data"]["result"]) == 2

        await until(scraped, 20, what="both nodes scraped")
        # A selector matching nothing: refused before any node is touched.
        code, report = await f.rollout("--restart", f.restart(), "--prometheus", prom.url,
                                       "--prometheus-selector", 'job="elsewhere"')
        assert code == 1 and report["done"] == [], report
        assert "Prometheus has no wsops_delivery_latency_seconds_bucket" in report["reason"]
        assert "drain" not in [s["step"] for s in report["steps"]]
        # An impossible latency gate fails on Prometheus' figures at the canary; the drain's
        # reconnect window is widened for one node taking 2 connections at 1/s.
        code, report = await f.rollout(
            "--restart", f.restart(), "--prometheus", prom.url, "--accept-rate", "1",
            "--gate", "delivery_p99 < 0.001ms", "--bake", "3", "--canary-bake", "3",
            "--settle", "10")
        assert code == 3, report
        assert report["failed"] == f.admin_urls[0]
        assert "delivery_p99 < 0.001ms" in report["reason"]
        assert "from prometheus" in report["reason"]
        assert "reconnect window widened to 2 s for 1 nodes" in report["steps"][0]["text"]
        # The default gates, from Prometheus, on the healthy fleet: every node upgraded.
        code, report = await f.rollout("--restart", f.restart(), "--prometheus", prom.url,
                                       "--bake", "3", "--canary-bake", "3", "--settle", "10")
        assert code == 0, report
        bakes = [s for s in report["steps"] if s["step"] == "bake" and "node_figures" in s]
        assert len(bakes) == 4 and {s["source"] for s in bakes} == {"prometheus"}
        assert all(s["node_figures"]["delivery_p99"] > 0 for s in bakes)
        print("\n" + "\n".join(s["text"] for s in bakes))
    for got in f.received:
        await until(partial(_has_all, got, f.acked), 15,
                    what="every acknowledged publish delivered")


@pytest.mark.slow
async def test_an_orchestrator_replacing_nodes_at_new_addresses_is_followed_by_the_registry(
        redis_proc: RedisProc, tmp_path: Path) -> None:
    """``--wait-replacement --redis``: as a Deployment does, the "orchestrator" here replaces
    each drained node by a new process on other ports; the rollout finds it in the registry,
    bakes it there, and counts it done under its new address."""
    admins = [free_port() for _ in range(2)]
    for admin in admins:
        (tmp_path / f"{admin}.args").write_text(json.dumps([
            "--allow-anonymous", "--broker", broker_url(redis_proc), "--port", str(free_port()),
            "--admin-port", str(admin), "--drain-spread", "0.1"]))
    old = [f"http://127.0.0.1:{a}" for a in admins]
    template = restart_template(tmp_path)
    stop = asyncio.Event()

    async def orchestrator() -> None:
        replaced: set[str] = set()
        async with aiohttp.ClientSession() as s:
            while not stop.is_set():
                for url in set(old) - replaced:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with s.get(url + "/admin/drain") as r:
                            drained = (await r.json())["state"] == "drained"
                        if drained:
                            replaced.add(url)
                            proc = await asyncio.create_subprocess_shell(
                                template.replace("{admin_url}", url) + " --move", cwd=ROOT)
                            assert await proc.wait() == 0
                await asyncio.sleep(0.1)

    try:
        for url in old:
            proc = await asyncio.create_subprocess_shell(template.replace("{admin_url}", url),
                                                         cwd=ROOT)
            assert await proc.wait() == 0
        for url in old:
            await until(partial(_ready, url), 30, what=f"{url} ready")
        watcher = asyncio.create_task(orchestrator())
        code, report = await run_rollout("--redis", broker_url(redis_proc),
                                         "--wait-replacement", "--settle", "0", "--bake", "1",
                                         "--canary-bake", "1", cwd=ROOT)
        stop.set()
        await watcher
        assert code == 0, report
        assert len(report["done"]) == 2 and not set(report["done"]) & set(old), report["done"]
        moved = [s["text"] for s in report["steps"] if s["step"] == "ready"]
        assert all(", replaced by http://127.0.0.1:" in t for t in moved), moved
        for url in report["done"]:
            assert await _ready(url)
    finally:
        stop.set()
        await asyncio.to_thread(kill_all, tmp_path)
