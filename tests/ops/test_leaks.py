"""``wsops leaks`` against live nodes: a plain aiohttp app with planted leaks (found, to the
line), the bundled server under churn (nothing found), tracemalloc left as it was, and ``diff``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from typer.testing import CliRunner

from tests.support.ports import free_port
from tests.support.procs import start_serve
from tests.support.redisproc import redis_server_binary
from tests.support.waits import until, until_sync
from tests.support.wsclient import RawClient
from wsops.cli import app

LEAKY = Path(__file__).with_name("leaky_app.py")
PLANTED_LINE = next(i for i, text in enumerate(LEAKY.read_text().splitlines(), 1)
                    if "# PLANTED" in text)
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
ENV.pop("WSOPS_ADMIN_TOKEN", None)


@dataclass
class Node:
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


@contextlib.contextmanager
def leaky_node(*args: str) -> Iterator[Node]:
    """``tests/ops/leaky_app.py`` in its own process, ready when this yields."""
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.ops.leaky_app", "--port", str(port), "--admin-port",
         str(admin), *args], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    node = Node(proc, port, admin)
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"leaky app exited with {proc.returncode}")
            try:
                get(node.admin + "/healthz")
            except OSError:
                return False
            return True

        until_sync(healthy, 15, what="the leaky app's /healthz", step=0.1)
        yield node
    finally:
        proc.kill()
        proc.wait()


async def talk(url: str, stop: asyncio.Event, rate: float) -> None:
    """One connection sending ``rate`` messages a second until ``stop``."""
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        while not stop.is_set():
            await ws.send_str("m" * 100)
            await ws.receive()
            await asyncio.sleep(1 / rate)


async def churn(url: str, stop: asyncio.Event, rate: float) -> None:
    """Short connections, one message each, ``rate`` a second."""
    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            async with s.ws_connect(url) as ws:
                await ws.send_str("hello")
                await ws.receive()
            await asyncio.sleep(1 / rate)


@contextlib.asynccontextmanager
async def traffic(*jobs: Any) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(job(stop)) for job in jobs]
    try:
        await asyncio.sleep(0.5)  # the traffic under way before the block runs
        yield
    finally:
        stop.set()
        done = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [d for d in done if isinstance(d, BaseException)]
    assert not errors, errors


async def wsops_leaks(*args: str, interrupt_after: float | None = None) -> tuple[int, str]:
    """``python -m wsops leaks ARGS`` as a real process; (exit code, stdout)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wsops", "leaks", *args, cwd=ROOT, env=ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        if interrupt_after is not None:
            await asyncio.sleep(interrupt_after)
            proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode() * (proc.returncode not in (0, 3))


def leaky_traffic(node: Node) -> list[Any]:
    return [lambda stop: talk(node.base + "/ws", stop, 20) for _ in range(3)] + [
        lambda stop: churn(node.base + "/ws", stop, 5),
        lambda stop: churn(node.base + "/churn", stop, 5),
    ]


@pytest.mark.slow  # a node and two profiling runs, ~10 s
async def test_finds_the_planted_leak_to_the_line_and_turns_tracemalloc_off_again(
        tmp_path: Path) -> None:
    saved = tmp_path / "last.json"
    with leaky_node("--keep-closed") as node:
        assert get(node.admin + "/admin/profile")["tracing"] is False
        async with traffic(*leaky_traffic(node)):
            code, out = await wsops_leaks(node.admin, "--duration", "8", "--interval", "1",
                                          "--json", "--save", str(saved))
        assert code == 3, out
        report = json.loads(out)
        top = report["sites"][0]
        assert (top["file"], top["line"]) == (str(LEAKY), PLANTED_LINE)
        assert top["suspect"] and top["tau"] > 0.9 and top["slope"] > 64 * 1024
        assert report["websockets"]["suspect"]  # --keep-closed: closed sockets referenced
        assert report["websockets"]["closed_last"] > 0
        assert report["tracing_started_by_run"] and report["tracing_after"] is False
        assert report["exit_code"] == 3 and report["suspects"] >= 2
        state = get(node.admin + "/admin/profile")
        assert state["tracing"] is False and state["sessions"] == 0
    data = json.loads(saved.read_text())
    assert data["format"] == "wsops-leaks-sample/1" and data["group"] == "lineno"
    assert any(s["key"] == f"{LEAKY}:{PLANTED_LINE}" for s in data["sample"]["sites"])


@pytest.mark.slow  # a node and two profiling runs, ~10 s
async def test_tracing_already_on_stays_on_and_diff_shows_the_planted_site_first(
        tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    with leaky_node() as node:
        mine = post(node.admin + "/admin/profile/start", {"frames": 5, "lease_seconds": 120})
        assert mine["started"] is True
        async with traffic(*leaky_traffic(node)):
            for path in (a, b):
                code, out = await wsops_leaks(node.admin, "--duration", "2", "--interval", "1",
                                              "--json", "--save", str(path))
                assert code in (0, 3), out
                report = json.loads(out)
                assert not report["tracing_started_by_run"] and report["tracing_after"] is True
                assert get(node.admin + "/admin/profile")["tracing"] is True
                await asyncio.sleep(1)  # the leak grows between the two saves
        stopped = post(node.admin + "/admin/profile/stop", {"session": mine["session"]})
        assert stopped["stopped"] and stopped["tracing"] is False
    runner = CliRunner()
    result = runner.invoke(app, ["leaks", "diff", str(a), str(b), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["key"] == f"{LEAKY}:{PLANTED_LINE}" and rows[0]["growth"] > 0
    table = runner.invoke(app, ["leaks", "diff", str(a), str(b), "--top", "3"],
                          env={"COLUMNS": "200"})
    assert table.exit_code == 0
    first_row = next(line for line in table.stdout.splitlines() if "│ 1 " in line)
    assert f"leaky_app.py:{PLANTED_LINE}" in first_row
    filtered = runner.invoke(app, ["leaks", "diff", str(a), str(b), "--json", "--filter",
                                   "leaky_app.py"])
    assert json.loads(filtered.stdout)[0]["key"] == f"{LEAKY}:{PLANTED_LINE}"
    nothing = runner.invoke(app, ["leaks", "diff", str(a), str(b), "--json", "--filter", "/no/"])
    assert json.loads(nothing.stdout) == []
    by_path = runner.invoke(app, ["leaks", "diff", str(a), str(b), "--by", "traceback"])
    assert by_path.exit_code == 2 and "--group traceback" in by_path.output


async def test_ctrl_c_still_reports_and_restores_tracemalloc() -> None:
    with leaky_node() as node:
        async with traffic(*leaky_traffic(node)):
            code, out = await wsops_leaks(node.admin, "--duration", "60", "--interval", "0.5",
                                          "--json", interrupt_after=5)
        report = json.loads(out)
        assert report["interrupted"] and report["samples"] >= 3
        assert code == report["exit_code"]
        assert report["tracing_after"] is False
        assert get(node.admin + "/admin/profile")["tracing"] is False


@pytest.mark.slow
async def test_bundled_server_under_churn_has_no_suspect() -> None:
    node = start_serve("--allow-anonymous")
    rooms = ["chat:main", "chat:a", "chat:b"]

    async def subscriber(stop: asyncio.Event) -> None:
        c = await RawClient.connect(node.url)
        await c.call("subscribe", "chat:main", presence=True)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.events.get(), 0.5)
        await c.close()

    async def publisher(stop: asyncio.Event) -> None:
        c = await RawClient.connect(node.url)
        n = 0
        while not stop.is_set():
            n += 1
            await c.call("publish", "chat:main", data={"n": n, "text": "x" * 100})
            await asyncio.sleep(1 / 80)
        await c.close()

    async def churner(stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            c = await RawClient.connect(node.url)
            room = rooms[n % len(rooms)]
            await c.call("subscribe", room, presence=True)
            # Publishes stay in chat:main: other rooms' histories would still be filling.
            await c.call("publish", "chat:main", data={"hello": n})
            await c.close()
            await asyncio.sleep(1 / 8)

    async def published_reaches(n: int) -> None:
        got = [0]

        def enough() -> bool:
            got[0] = get(node.admin_url + "/admin/stats")["broker"]["published"]
            return got[0] >= n

        await until(enough, 60, step=0.5,
                    what=lambda: f"{n} published (traffic too slow: {got[0]} of {n})")

    try:
        async with traffic(*[subscriber] * 6, *[publisher] * 2, *[churner] * 2):
            # A history ring allocated before tracing started and refilled afterwards is
            # indistinguishable from a leak until it has turned over once (see the caveat the
            # command prints): fill chat:main's history (1000 messages), start tracing, let it
            # turn over under tracing, then sample, as an operator would.
            await published_reaches(1100)
            mine = post(node.admin_url + "/admin/profile/start", {"frames": 5})
            await published_reaches(get(node.admin_url + "/admin/stats")["broker"]["published"]
                                    + 1100)
            code, out = await wsops_leaks(node.admin_url, "--duration", "14", "--interval", "2",
                                          "--json")
            post(node.admin_url + "/admin/profile/stop", {"session": mine["session"]})
        report = json.loads(out)
        suspects = [{k: f.get(k) for k in ("name", "slope", "growth", "tau", "late_slope",
                                           "count", "traceback")}
                    for kind in ("sites", "types", "checks") for f in report[kind]
                    if f["suspect"]]
        assert code == 0 and report["suspects"] == 0, json.dumps(suspects)
        assert not report["websockets"]["suspect"]
        assert {c["name"] for c in report["checks"]} == {
            "hub_rooms_without_subscribers", "broker_presence_rooms_without_subscribers",
            "broker_watched_rooms_without_subscribers"}
        assert get(node.admin_url + "/admin/profile")["tracing"] is False
    finally:
        node.stop()


@pytest.mark.slow  # a supervisor, two workers and a redis-server, then two profiling runs
@pytest.mark.skipif(redis_server_binary() is None, reason="needs redis-server")
async def test_a_workers_nodes_admin_url_profiles_each_worker(tmp_path: Path) -> None:
    node = await asyncio.to_thread(start_serve, "--workers", "2", "--allow-anonymous",
                                   timeout=20)
    try:
        workers = get(node.admin_url + "/admin/stats")["workers"]
        urls = {w["worker"]: w["admin_url"] for w in workers}
        assert set(urls) == {0, 1}
        saved = tmp_path / "s.json"
        code, out = await wsops_leaks(node.admin_url, "--duration", "2", "--interval", "1",
                                      "--json", "--save", str(saved))
        assert code in (0, 3), out
        report = json.loads(out)
        assert report["node"] == node.admin_url and report["skipped"] == []
        assert [(w["worker"], w["node"]) for w in report["workers"]] == [(0, urls[0]),
                                                                          (1, urls[1])]
        for w in report["workers"]:
            assert w["samples"] >= 2 and w["tracing_started_by_run"]
            assert w["tracing_after"] is False and w["error"] is None
        names = await asyncio.to_thread(lambda: {p.name for p in tmp_path.iterdir()})
        assert names == {"s.worker0.json", "s.worker1.json"}
        code, out = await wsops_leaks(f"127.0.0.1:{node.admin_port}", "--worker", "1",
                                      "--duration", "1", "--interval", "1")
        assert code in (0, 3), out
        assert f"{node.admin_url} · worker 1 ({urls[1]})" in out and "worker 0" not in out
        assert all(get(u + "/admin/profile")["tracing"] is False for u in urls.values())
    finally:
        await asyncio.to_thread(node.stop)


def test_usage_errors_and_an_unreachable_node() -> None:
    runner = CliRunner()
    ws_url = runner.invoke(app, ["leaks", "ws://127.0.0.1:9765/ws"], env={"COLUMNS": "200"})
    assert ws_url.exit_code == 2 and "is a WebSocket URL" in ws_url.output
    # HOST:PORT means http://HOST:PORT here as in status and drain: it is tried, not refused.
    port = free_port()
    bare = runner.invoke(app, ["leaks", f"127.0.0.1:{port}", "--duration", "1", "--interval",
                               "1"], env={"WSOPS_ADMIN_TOKEN": None, "COLUMNS": "200"})
    assert bare.exit_code == 1 and f"http://127.0.0.1:{port}" in bare.output
    assert "connect" in bare.output
    backwards = runner.invoke(app, ["leaks", "http://x", "--duration", "2", "--interval", "5"])
    assert backwards.exit_code == 2
    down = runner.invoke(app, ["leaks", f"http://127.0.0.1:{free_port()}", "--duration", "1",
                               "--interval", "1"],
                         env={"WSOPS_ADMIN_TOKEN": None})
    assert down.exit_code == 1 and "connect" in down.output


def test_help_explains_options_with_examples() -> None:
    runner = CliRunner()
    wide = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}
    for args in (["leaks", "--help"], ["leaks", "run", "--help"], ["leaks", "diff", "--help"]):
        result = runner.invoke(app, args, env=wide)
        assert result.exit_code == 0
        assert "Example: wsops leaks" in result.output
    run_help = runner.invoke(app, ["leaks", "run", "--help"], env=wide).output
    for option in ("--duration", "--interval", "--frames", "--top", "--json", "--save",
                   "--token", "WSOPS_ADMIN_TOKEN", "3 suspects found"):
        assert option in run_help
    diff_help = runner.invoke(app, ["leaks", "diff", "--help"], env=wide).output
    assert "--filter" in diff_help and "--by" in diff_help


def test_diff_refuses_files_it_did_not_save(tmp_path: Path) -> None:
    other = tmp_path / "x.json"
    other.write_text("{}")
    result = CliRunner().invoke(app, ["leaks", "diff", str(other), str(other)])
    assert result.exit_code == 2
