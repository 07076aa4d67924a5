"""``--report FILE.html`` of ``wsops leaks``, ``loadtest`` and ``drain`` against live nodes, each
opened in headless Chromium and held to the same run's ``--json`` (``check_report``): no
console error, no network request, every section, every figure equal to the JSON. The
screenshots are the README's (``WSOPS_UPDATE_SCREENSHOTS=1`` writes them to docs/reports/).
``wsops rollout --report`` is checked the same way in tests/ops/test_rollout.py."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.ops.test_leaks import LEAKY, PLANTED_LINE, leaky_node, leaky_traffic, traffic
from tests.support.chromium import CHROMIUM
from tests.support.procs import start_serve
from tests.support.reports import check_report
from tests.support.waits import until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")]


async def wsops(*args: str, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
    """``python -m wsops ARGS`` (with ``--json`` among them): exit code, JSON, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wsops", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    try:
        return proc.returncode, json.loads(out), err.decode()
    except ValueError:
        raise AssertionError(f"no JSON: {out!r} {err.decode()}") from None


async def test_the_loadtest_report_draws_the_run_its_json_describes(tmp_path: Path) -> None:
    report = tmp_path / "loadtest.html"
    node = start_serve("--allow-anonymous")
    try:
        code, data, err = await wsops(
            "loadtest", "fanout", node.url, "-c", "300", "--rooms", "6", "--rate", "300",
            "-d", "4", "-p", "2", "--admin", node.admin_url, "--slo-p99", "8", "--json", "-",
            "--report", str(report))
    finally:
        node.stop()
    assert code == 0, err
    assert f"report: {report}" in err
    m = data["messages"]
    # The timeline and the histogram account for every delivery of the summary.
    assert m["lost"] == 0 and m["received"] == m["expected_deliveries"] > 0
    assert data["timeline"][-1]["received"] == m["received"]
    assert sum(p["latency_count"] for p in data["timeline"]) == m["latency"]["count"]
    assert sum(n for _, _, n in m["latency"]["histogram"]) == m["latency"]["count"]
    assert data["connections"]["opened_over_time"][-1]["opened"] == 300
    # The server read once a second (not once per load process), from before the
    # connections opened to after the load.
    server, load = data["server"]["timeline"], data["server"]["load_started"]
    assert server[0]["t"] == 0 and server[0]["connections"] == 0 and load > 0
    assert 5 <= len([p for p in server if p["t"] >= load]) <= 4 + 3 + 3, server
    cpu = [p["cpu_percent"] for p in server[1:] if p["cpu_percent"] is not None]
    assert len(cpu) >= 4 and all(0 <= c <= 250 for c in cpu), server  # (None: under 0.5 s)
    assert data["slo"] == {"p99_ms": 8.0, "met": m["latency"]["p99_ms"] <= 8.0}
    assert data["command"] == (f"wsops loadtest fanout {node.url} -c 300 --rooms 6 --rate 300 "
                               f"-d 4 -p 2 --admin {node.admin_url} --slo-p99 8 --json - --report "
                               f"{report}")
    checked = await check_report(
        report, data, ["summary", "connections", "throughput", "latency", "losses", "server",
                       "command"], "report-loadtest.png", readme=True,
        must_show=["/messages/latency/p99_ms", "/messages/latency/p999_ms", "/messages/lost",
                   "/timeline/p50_ms", "/timeline/p99_ms", "/timeline/p999_ms",
                   "/timeline/deliveries_per_second", "/timeline/published_per_second",
                   "/messages/latency/histogram", "/slo/p99_ms",
                   "/connections/opened_over_time/opened", "/server/timeline/cpu_percent",
                   "/server/timeline/rss_bytes", "/server/load_started", "/versions/wsops"])
    assert checked["figures"] >= 20 and checked["chart_parts"] >= 9


async def test_the_leaks_report_shows_the_planted_leak_as_a_suspect(tmp_path: Path) -> None:
    report = tmp_path / "leaks.html"
    with leaky_node("--keep-closed") as node:
        async with traffic(*leaky_traffic(node)):
            code, data, err = await wsops("leaks", node.admin, "--duration", "8", "--interval",
                                          "1", "--json", "--report", str(report))
    assert code == 3, err
    top = data["sites"][0]
    assert (top["file"], top["line"], top["suspect"]) == (str(LEAKY), PLANTED_LINE, True)
    assert len(top["series"]["t"]) == len(top["series"]["y"]) >= 8
    assert set(top["series"]["t"]) <= set(data["timeline"]["t"])  # (from its first sample on)
    await check_report(
        report, data, ["summary", "memory", "sites", "types", "command"], "report-leaks.png",
        readme=True,
        must_show=["/suspects", "/timeline/rss", "/timeline/traced", "/sites/0/series/y",
                   "/sites/0/slope", "/sites/0/suspect", "/memory/rss/slope"])
    text = report.read_text()
    assert f"SUSPECT · tests/ops/leaky_app.py:{PLANTED_LINE}" in text  # the small multiple's title


async def test_the_drain_report_shows_the_fall_on_the_node_and_the_rise_on_its_peer(
        tmp_path: Path) -> None:
    report = tmp_path / "drain.html"
    drained, peer = start_serve("--allow-anonymous"), start_serve("--allow-anonymous")
    moved: list[aiohttp.ClientWebSocketResponse] = []
    try:
        async with aiohttp.ClientSession() as s:

            async def client() -> None:
                """Connected to the drained node; after its 1012, to the peer."""
                ws = await s.ws_connect(drained.url)
                await ws.receive()  # the close
                assert ws.close_code == 1012
                moved.append(await s.ws_connect(peer.url))

            clients = [asyncio.create_task(client()) for _ in range(60)]
            await until(lambda: _connections(drained.admin_url, 60), 10, what="60 connected")
            code, data, err = await wsops(
                "drain", drained.admin_url, "--batch", "10", "--interval", "0.3", "--deadline",
                "20", "--spread", "1", "--peer", peer.admin_url, "--json", "--report",
                str(report))
            await asyncio.gather(*clients)
            for ws in moved:
                await ws.close()
    finally:
        drained.stop()
        peer.stop()
    assert code == 0, err
    assert data["drain"]["total"] == 60 and data["drain"]["closed"] == 60
    batches = data["batches"]
    assert sum(b["sent"] for b in batches) == 60 and len(batches) == data["drain"]["batches"]
    assert data["batches_from"] == "node" and [b["sent"] for b in batches] == [10] * 6
    tl = data["timeline"]
    assert tl[0]["remaining"] == 60 and tl[-1]["remaining"] == 0
    assert tl[0]["ready"] is False and tl[-1]["state"] == "drained"
    [seen] = data["peers"]
    assert seen["url"] == peer.admin_url
    assert seen["connections"][0] == 0 and seen["connections"][-1] == 60  # where they went
    await check_report(
        report, data, ["summary", "connections", "options", "command"], "report-drain.png",
        readme=True,
        must_show=["/timeline/remaining", "/peers/0/connections", "/batches/sent",
                   "/timeline/ready", "/deadline_seconds", "/drain/forced"])


async def _connections(admin_url: str, n: int) -> bool:
    async with aiohttp.ClientSession() as s, s.get(admin_url + "/admin/stats") as r:
        return bool((await r.json())["connections"] >= n)


async def test_the_check_fails_a_page_that_fetches_runs_a_broken_script_or_misstates(
        tmp_path: Path) -> None:
    """``check_report`` itself: a report that would fetch something, one whose script throws
    and one whose figure is not the JSON's are each refused."""
    from wsops.ops.reports import drainreport

    data = {"node": "http://n", "result": "error", "exit_code": 1, "message": "refused"}
    good = drainreport.render(data)
    cases = {
        "fetch": good.replace("</main>", '<img src="http://127.0.0.1:9/x.png"></main>'),
        "script": good.replace("<head>", "<head><script>throw new Error('x')</script>").replace(
            "default-src 'none'", "default-src 'none'; script-src 'unsafe-inline'"),
        "fetch without the CSP": re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "",
                                        good).replace("</main>", '<link rel="stylesheet" '
                                                      'href="http://127.0.0.1:59999/s.css"></main>'),
        "figure": good.replace('data-value="&quot;error&quot;"', 'data-value="&quot;ok&quot;"'),
    }
    assert all(page != good for page in cases.values())
    for name, page in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.html"
        path.write_text(page)
        with pytest.raises(AssertionError) as failed:
            await check_report(path, data, ["summary"], f"check-{path.stem}.png")
        print(f"{name}: {str(failed.value)[:160]}")
    (tmp_path / "good.html").write_text(good)
    await check_report(tmp_path / "good.html", data, ["summary", "command"], "check-good.png")
