"""``wsops rollout`` on the example fleet (Redis, three nodes, HAProxy): the nodes run the wsops
of an earlier commit (from before versions were negotiated), installed in a venv of its own,
and are upgraded to this tree one by one while ``wsops loadtest --reconnect`` publishes and
resumes through HAProxy and wsops clients receive; then a broken "new version" stops at its
canary and is rolled back."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import tarfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.conftest import Watched, clients, close_all, connect_all, percentile, stats
from tests.support.artifacts import record
from tests.support.restartnode import kill_all, restart_template, run_rollout
from tests.support.waits import until
from wsops.client import Message, ServerError

ROOT = Path(__file__).resolve().parents[2]
FROM_REV = "6b2d460"
"""The earlier version: main before #20 (no subprotocol, no Redis schema version, no
reconnect hint, no node_id in /admin/stats): the mixed-version fleet a rollout must cross."""
ROOM = "rollout"
LOAD_SECONDS = 45


def install_earlier(rev: str, where: Path) -> Path:
    """A venv holding the wsops of ``rev`` (its own pip installs its tree, building it as pip
    does, with setuptools from the package registry; its dependencies are this environment's,
    reached through a .pth); returns its python. (Never this environment's pip: installing a
    wsops elsewhere with it would uninstall this environment's own.)"""
    tree = where / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    backport_drain_fix(tree / "wsops" / "server" / "wsconn.py")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], check=True, capture_output=True, text=True).stdout
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site.strip()) / "wsops-deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                    "--disable-pip-version-check", str(tree)], check=True, cwd=where)
    return python


LOOP_TOP = "            while True:\n                began = _perf()\n"


def backport_drain_fix(wsconn: Path) -> None:
    """The earlier version with e93b415 backported, as a patch release would carry it: a
    publish read just before a drain's close was stored while its reply was dropped, so a
    client resending what was unanswered stored it twice (the load test saw one publish
    repeated to its 29 other subscribers in one CI run of ~10). That is the earlier version's
    bug, not the rollout's: without the backport this test could not ask for none twice."""
    text = wsconn.read_text()
    assert text.count(LOOP_TOP) == 1, "the earlier version's _serve loop moved"
    wsconn.write_text(text.replace(LOOP_TOP, "            while True:\n"
                                   "                if conn.closing or self.close_sent:\n"
                                   "                    break\n"
                                   "                began = _perf()\n"))


async def run(command: str) -> None:
    proc = await asyncio.create_subprocess_shell(command, cwd=ROOT)
    assert await proc.wait() == 0, command


async def rollout(*args: str) -> tuple[int, dict[str, Any]]:
    return await run_rollout(*args, cwd=ROOT)


restart = restart_template


async def _earlier(admin_urls: list[str]) -> bool:
    """Every node answers, as the earlier version (its /admin/stats has no node_id)."""
    try:
        return all(["node_id" not in await stats(u) for u in admin_urls])
    except Exception:
        return False


def _caught_up(got: list[Message], acked: list[Any]) -> bool:
    return len(got) >= len(acked)


async def _restarted(admin_url: str, started_at: float) -> bool:
    try:
        return bool((await stats(admin_url))["started_at"] != started_at)
    except Exception:
        return False


@pytest.mark.slow
async def test_rollout_upgrades_the_example_fleet_from_an_earlier_version_losing_nothing(
        fleet: Any, tmp_path: Path) -> None:
    old = await asyncio.to_thread(install_earlier, FROM_REV, tmp_path / "earlier")
    where = tmp_path / "nodes"
    where.mkdir()
    for node in fleet.nodes:  # the fleet's own processes, described for the restart command
        (where / f"{node.admin_port}.args").write_text(json.dumps(node.proc.argv[4:]))
        (where / f"{node.admin_port}.pid").write_text(str(node.proc.pid))
    admin_urls = [n.admin_url for n in fleet.nodes]
    watched = Watched(fleet.url, 60)
    publisher = clients(fleet.url, 1)[0]
    canary_publisher = clients(fleet.nodes[0].url, 1)[0]
    acked: list[int] = []
    sent_at: dict[int, float] = {}
    stop = asyncio.Event()

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            sent_at[n] = time.time()
            await publisher.publish(ROOM, n, timeout=30)
            acked.append(n)
            await asyncio.sleep(0.05)

    async def publish_on_canary() -> int:
        """Publishes straight to the first node (HAProxy sends a replaced node no existing
        connection: its canary needs traffic of its own to be judged); returns the refused."""
        refused = 0
        while not stop.is_set():
            try:
                await canary_publisher.publish(ROOM + "-canary", "x", timeout=30)
            except ServerError:
                refused += 1
            await asyncio.sleep(0.05)
        return refused

    try:
        for url in admin_urls:  # every node back on the earlier version first
            await run(restart(where, "--python", str(old)).replace("{admin_url}", url))
        await until(lambda: _earlier(admin_urls), 60, what="the earlier version serving")
        await until(lambda: fleet.up() == {0, 1, 2}, 60, what="HAProxy sending to all")
        await connect_all([*watched.clients, publisher])
        await asyncio.gather(*(c.subscribe(ROOM) for c in watched.clients))
        publishing = asyncio.create_task(publish())
        load_report = tmp_path / "loadtest.json"
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wsops", "loadtest", "fanout", fleet.url, "-c", "90",
            "--rooms", "3", "--rate", "60", "-d", str(LOAD_SECONDS), "--reconnect",
            "--settle", "10", "--json", str(load_report), cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        await until(lambda: len(acked) >= 20, 10, what="traffic before the rollout")
        await asyncio.sleep(2)  # the load test's connections open first
        started = time.monotonic()
        code, report = await rollout("--redis", fleet.broker_url, "--restart", restart(where),
                                     "--bake", "2", "--canary-bake", "3", "--settle", "5")
        took = time.monotonic() - started
        assert took < LOAD_SECONDS - 5, [(round(s["at"] - report["steps"][0]["at"], 1),
                                           s["node"][-5:], s["step"], s["text"][:60])
                                          for s in report["steps"]]
        _, err = await asyncio.wait_for(load.communicate(), LOAD_SECONDS + 60)
        assert load.returncode == 0, err.decode()
        loaded = json.loads(load_report.read_text())
        assert code == 0, report
        assert sorted(report["done"]) == sorted(admin_urls)
        assert [("node_id" in await stats(u)) for u in admin_urls] == [True] * 3  # this version
        count = len(acked)
        await until(lambda: len(acked) >= count + 20, 15, what="traffic after the rollout")
        stop.set()
        await publishing
        for got in watched.got:  # each acknowledged publish, once, in order, on every client
            await until(partial(_caught_up, got, acked), 20, what="every message")
            assert [m.data for m in got] == acked
        assert watched.gaps == []
        lm = loaded["messages"]  # the load test's own count, through HAProxy, across the moves
        assert lm["published"] == lm["acked"] > 1000 and lm["lost"] == 0
        assert lm["received"] == lm["expected_deliveries"]
        assert lm["sequence_gaps"] == 0 and lm["sequence_out_of_order"] == 0
        assert loaded["connections"]["reconnects"] >= 60  # two thirds of 90 moved at least
        delays = [max(0.0, watched_at - sent_at[m.data])
                  for got, times in zip(watched.got, watched.times, strict=True)
                  for m, watched_at in zip(got, times, strict=True)]
        record("fleet-rollout", {
            "from": FROM_REV, "nodes": len(admin_urls), "rollout_seconds": round(took, 1),
            "publishes_acked": len(acked), "subscribers": len(watched.clients), "lost": 0,
            "moved_clients": len(watched.closed_at),
            "delivery_p50_ms": round(percentile(delays, 0.5) * 1000, 2),
            "delivery_p99_ms": round(percentile(delays, 0.99) * 1000, 2),
            "reconnect_p99_s": round(percentile(watched.reconnect_seconds(), 0.99), 2),
            "loadtest": {"published": lm["published"], "lost": lm["lost"],
                         "repeats": lm["sequence_out_of_order"],
                         "reconnects": loaded["connections"]["reconnects"],
                         "delivery_p99_ms": lm["latency"]["p99_ms"],
                         "delivery_max_ms": lm["latency"]["max_ms"]}})

        # A broken "new version" (a rate limit far too low: most requests refused) stops at
        # its canary, is rolled back, and the rest of the fleet is not touched.
        before = [await stats(u) for u in admin_urls]
        broken = restart(where, "--rate-limit", "1", "--rate-burst", "2",
                         "--rate-limit-strikes", "1000000")
        stop.clear()
        await canary_publisher.connect(timeout=10)
        on_canary = asyncio.create_task(publish_on_canary())
        code, report = await rollout(*admin_urls, "--restart", broken, "--rollback",
                                     restart(where), "--bake", "2", "--canary-bake", "3",
                                     "--settle", "10")
        assert code == 3, report
        assert report["failed"] == admin_urls[0] and "error_rate" in report["reason"]
        # Rolled back: the first node answers as a new process (of the good version), the
        # others are the very processes they were.
        await until(lambda: _restarted(admin_urls[0], before[0]["started_at"]), 60,
                    what="the rolled-back node serving")
        after = [await stats(u) for u in admin_urls]
        assert [a["started_at"] for a in after[1:]] == [b["started_at"] for b in before[1:]]
        stop.set()
        assert await asyncio.wait_for(on_canary, 30) > 0  # the broken version did refuse
    finally:
        stop.set()
        await close_all([*watched.clients, publisher, canary_publisher])
        await asyncio.to_thread(kill_all, where)
