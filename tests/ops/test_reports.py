"""The reports' pure parts: charts, the page, the command line they show, the drain's batches,
and each report rendered from edge-case data (the load test's timeline: tests/loadtest/
test_timeline.py; the live runs and the browser: test_report_pages.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer

from tests.support.reports import resolve
from tests.support.runcli import cli, flat
from wsops.ops.drainview import DrainTimeline
from wsops.ops.leakcheck import Sample, SiteStat, analyze
from wsops.ops.reports import (
    charts,
    drainreport,
    leakreport,
    loadreport,
    output,
    page,
    rolloutreport,
)
from wsops.ops.reports.charts import Mark, Series

# -- charts and the page ---------------------------------------------------------------------


@pytest.mark.parametrize(("lo", "hi", "ticks"), [
    (0, 9.3, [0, 2, 4, 6, 8, 10]),
    (0, 100, [0, 20, 40, 60, 80, 100]),
    (0.1, 0.2, [0.1, 0.12, 0.14, 0.16, 0.18, 0.2]),
    (5, 5, [5, 6, 7, 8, 9, 10]),
    (0, 0, [0, 0.2, 0.4, 0.6, 0.8, 1]),
    (-3, 7, [-4, -2, 0, 2, 4, 6, 8]),
])
def test_nice_ticks_cover_the_range_in_round_steps(lo: float, hi: float,
                                                   ticks: list[float]) -> None:
    assert charts.nice_ticks(lo, hi) == ticks


def test_ticks_of_a_narrow_range_of_sizes_read_apart() -> None:
    svg = charts.line_chart([Series("rss", [0, 1, 2], [77.50e6, 77.52e6, 77.54e6])],
                            title="t", yfmt=charts.size, y_min=None)
    labels = re.findall(r'class="ytick">([^<]*)<', svg)
    assert len(labels) == len(set(labels)) >= 3 and labels[0].endswith(" MiB")


def test_a_pointer_escapes_any_name_and_resolves_through_lists() -> None:
    key = charts.pointer("connections", "errors", "OSError: a/b ~c")
    assert key == "/connections/errors/OSError: a~1b ~0c"
    data = {"connections": {"errors": {"OSError: a/b ~c": 3}},
            "timeline": [{"p99": 1.5}, {"p99": None}]}
    assert resolve(data, key) == 3
    assert resolve(data, "/timeline/p99") == [1.5, None]
    assert resolve(data, "/timeline/1/p99") is None
    with pytest.raises(KeyError):
        resolve(data, "/timeline/0/p50")
    assert charts.data_attrs("a.b.0", 2) == ' data-key="/a/b/0" data-value="2"'


def test_a_line_chart_breaks_at_gaps_and_says_what_it_plots() -> None:
    svg = charts.line_chart([Series("p99", [1, 2, 3, 4, 5], [1.0, 2.0, None, 4.0, 5.0],
                                    "timeline.p99_ms")],
                            title="<latency>", marks=[Mark("y", 8, "SLO", "slo.p99_ms")])
    assert svg.count("<polyline") == 2  # 1-2 and 4-5: no line across the gap
    assert 'data-key="/timeline/p99_ms" data-value="[1.0, 2.0, null, 4.0, 5.0]"' in svg
    assert 'data-key="/slo/p99_ms" data-value="8"' in svg
    assert "&lt;latency&gt;" in svg and "<latency>" not in svg
    lone = charts.line_chart([Series("x", [1, 2, 3], [None, 7, None], "k")], title="t")
    assert "<circle" in lone and "<polyline" not in lone
    assert "No data." in charts.line_chart([Series("x", [], [])], title="t")
    assert "No data." in charts.bar_chart([], [], title="t")
    assert "No data." in charts.histogram([], title="t")


def test_the_page_is_self_contained_and_embeds_its_data_safely() -> None:
    data = {"text": "</script><script>alert(1)</script>", "n": 1}
    html = page.document("t <x>", "s", [page.section("S", page.figure("n", "1", "n", 1),
                                                     id_="s")], data)
    assert f'content="{page.CSP}"' in html and "default-src 'none'" in page.CSP
    assert "<script>alert" not in html  # the data cannot close its script element
    blob = re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                     html, re.S)
    assert blob is not None and json.loads(blob.group(1)) == data
    assert not re.search(r"(src|href)=", html)  # nothing to fetch
    assert "<title>t &lt;x&gt;</title>" in html


# -- what the report shows of the command ----------------------------------------------------


@pytest.mark.parametrize(("argv", "shown"), [
    (["drain", "http://h:9765", "--token", "abc"], "wsops drain http://h:9765 --token '***'"),
    (["drain", "--token=abc", "x"], "wsops drain '--token=***' x"),
    (["loadtest", "echo", "ws://h/ws", "--admin-token", "t", "--admin", "h:1"],
     "wsops loadtest echo ws://h/ws --admin-token '***' --admin h:1"),
    (["rollout", "--redis", "redis://:pw@10.0.0.5:6379/0"],
     "wsops rollout --redis 'redis://:***@10.0.0.5:6379/0'"),
    (["rollout", "--redis", "redis://user:pw@h/0", "a b"],
     "wsops rollout --redis 'redis://user:***@h/0' 'a b'"),
    (["leaks", "http://h:1", "--duration", "5"], "wsops leaks http://h:1 --duration 5"),
    (["drain", "--redis", "redis://:p@ss@h:6379/0"], "wsops drain --redis 'redis://:***@h:6379/0'"),
    (["leaks", "http://h:1/?x=1&token=abc&y=2"], "wsops leaks 'http://h:1/?x=1&token=***&y=2'"),
])
def test_the_command_line_hides_secrets(argv: list[str], shown: str) -> None:
    assert output.command_line(argv) == shown


def test_a_report_path_that_cannot_be_written_is_refused_first(tmp_path: Path) -> None:
    output.check_path(tmp_path / "r.html")
    output.check_path(None)
    for bad, says in ((tmp_path / "no" / "r.html", "does not exist"),
                      (tmp_path, "is a directory")):
        with pytest.raises(typer.BadParameter, match=says):
            output.check_path(bad)


async def test_the_commands_refuse_a_bad_report_path_before_any_work(tmp_path: Path) -> None:
    bad = str(tmp_path / "missing" / "r.html")
    for args in (["leaks", "http://127.0.0.1:9", "--report", bad],
                 ["drain", "http://127.0.0.1:9", "--report", bad],
                 ["loadtest", "echo", "ws://127.0.0.1:9/ws", "--report", bad],
                 ["rollout", "http://127.0.0.1:9", "--restart", "true", "--report", bad],
                 ["rollout", "http://127.0.0.1:9", "--dry-run", "--report", str(tmp_path / "r")],
                 ["loadtest", "echo", "ws://127.0.0.1:9/ws", "--slo-p99", "inf"]):
        result = await cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert any(s in flat(result.output) for s in ("does not exist", "nothing to report",
                                                      "--slo-p99")), result.output
        assert "Connection refused" not in result.output
    assert (await cli("drain", "http://127.0.0.1:9", "--cancel", "--report",
                      str(tmp_path / "r.html"))).exit_code == 2


def test_write_replaces_the_file_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.html"
    path.write_text("old")
    output.write(path, "<html>new</html>")
    assert path.read_text() == "<html>new</html>"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    assert f"report: {path}" in capsys.readouterr().err


# -- the drain -------------------------------------------------------------------------------


def test_closes_between_polls_are_shared_over_the_batches_they_span() -> None:
    seen = DrainTimeline()
    for t, batches, closed in ((0.0, 1, 10), (0.2, 1, 10), (0.4, 4, 35), (0.6, 5, 40)):
        seen.status(t, {"state": "draining", "total": 40, "closed": closed, "batches": batches,
                        "remaining": 40 - closed}, False)
    assert seen.batches() == [
        {"batch": 1, "t": 0.0, "sent": 10}, {"batch": 2, "t": 0.4, "sent": 9},
        {"batch": 3, "t": 0.4, "sent": 8}, {"batch": 4, "t": 0.4, "sent": 8},
        {"batch": 5, "t": 0.6, "sent": 5}]
    # Following a drain already under way: what it closed before the first poll is not placed.
    assert [b["batch"] for b in seen.batches(following=True)] == [2, 3, 4, 5]
    long = DrainTimeline()
    for k in range(5000):  # a long deadline polled 5 times a second: bounded
        long.status(k / 5, {"state": "draining", "batches": k // 10, "closed": k}, False)
        long.peer(k / 5, "http://b", k)
    assert len(long.points) <= 2001 and long.points[0]["t"] == 0 and long.points[-1]["t"] == 999.8
    assert len(long.peers["http://b"]) <= 2001
    assert sum(b["sent"] for b in long.batches()) == 4990  # (batch 0's 10 never counted)
    assert seen.as_dict()["batches_from"] == "polls"
    # A node's own log, when it sends one, is exact: placed by its start on this timeline.
    # A node's own log, when it sends one: placed by when its answer arrived here and how far
    # into its drain it said it was then (its clock is never compared with this one's).
    seen.node_log({"started_at": 5000.0, "now": 5001.0, "closes": [
        {"t": 0.0, "batches": 1, "sent": 10}, {"t": 0.3, "batches": 2, "sent": 15},
        {"t": 0.61, "batches": 1, "sent": 5}]}, received=1.25)
    assert seen.batches() == seen.batches(following=True) == [
        {"batch": 1, "t": 0.25, "sent": 10}, {"batch": 2, "t": 0.55, "sent": 15, "batches": 2},
        {"batch": 4, "t": 0.86, "sent": 5}]
    assert seen.as_dict()["batches_from"] == "node"
    for sent_nothing_usable in ({"started_at": 1.0, "now": 2.0},  # an older node: no log
                                {"started_at": 1.0, "closes": []},  # no clock
                                {"started_at": 1.0, "now": 2.0, "closes": [{"t": 0}]},
                                {"started_at": 1.0, "now": 2.0, "closes": ["x"]},
                                {"started_at": 1.0, "now": 2.0, "closes": [
                                    {"t": "soon", "batches": 1, "sent": 1}]}):
        old = DrainTimeline()
        old.node_log(sent_nothing_usable, received=0.0)
        assert old.node_closes is None and old.as_dict()["batches_from"] == "polls"
    seen.peer(0.1, "http://b", 3)
    seen.peer(0.6, "http://b", None)
    assert seen.as_dict()["peers"] == [{"url": "http://b", "t": [0.1, 0.6],
                                        "connections": [3, None]}]


# -- each report from edge-case data ---------------------------------------------------------


def _shown(html: str, data: dict[str, Any]) -> int:
    """Every figure of ``html`` equals ``data`` at its pointer; how many there are."""
    found = re.findall(r'data-key="([^"]*)" data-value="([^"]*)"', html)
    import html as h
    for key, value in found:
        assert json.loads(h.unescape(value)) == json.loads(json.dumps(
            resolve(data, h.unescape(key)))), key
    return len(found)


def _sample(t: float, leak: int) -> Sample:
    site = SiteStat("app.py:3", "app.py", 3, leak, leak // 100)
    return Sample(t, {"app.py:3": site}, {"dict": 1000 + leak // 1000}, 5e7 + leak, 1e6 + leak)


def test_the_leaks_report_of_a_heap_and_of_too_few_samples() -> None:
    rep = analyze([_sample(t, 400_000 * t) for t in range(8)])
    data = {"node": "http://n", "tracing": "x", "frames": 5, "caveats": ["c"],
            **rep.as_dict(), "exit_code": 3, "command": "wsops leaks http://n", "versions": {}}
    assert data["sites"][0]["series"]["y"] == [400_000.0 * t for t in range(8)]
    html = leakreport.render(data)
    assert _shown(html, data) >= 20 and "SUSPECT · app.py:3" in html
    few = {"node": "http://n", "samples": 1, "suspects": 0, "error": "gone"}
    assert "fewer than 2" in leakreport.render(few)
    workers = {"node": "http://n", "exit_code": 3, "skipped": ["worker 1: down"],
               "workers": [{"worker": 0, **data}]}
    html = leakreport.render(workers)
    assert _shown(html, workers) >= 20 and "worker 1: down" in html


def test_the_loadtest_report_of_a_connect_run_has_no_message_charts() -> None:
    data: dict[str, Any] = {
        "plan": {"scenario": "connect", "connections": 10, "duration": 1, "url": "ws://h"},
        "connections": {"requested": 10, "opened": 9, "open_at_end": 9, "reconnects": 0,
                        "failed": 1, "seconds_to_open": 0.1, "per_second": 90.0,
                        "connect_latency": {"p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 2.0},
                        "errors": {"OSError: x/y": 1}, "close_codes": {},
                        "opened_over_time": [{"t": 0.0, "opened": 0}, {"t": 0.1, "opened": 9}]},
        "timeline": [], "server": None, "command": "wsops loadtest connect ws://h",
        "versions": {"wsops": "0"}}
    html = loadreport.render(data)
    assert 'id="latency"' not in html and "Not measured" in html
    assert _shown(html, data) >= 8


def test_the_drain_and_rollout_reports_of_runs_that_went_wrong() -> None:
    seen = DrainTimeline()
    seen.status(0.0, {"state": "draining", "total": 3, "closed": 1, "batches": 1,
                      "remaining": 2}, None)
    seen.status(0.5, {"state": "drained", "total": 3, "closed": 1, "forced": 2, "batches": 1,
                      "remaining": 0}, False)
    drain = {"node": "http://n", "result": "timeout", "exit_code": 4, "message": "m",
             "following": True, "options": None, "elapsed_seconds": 0.5, "deadline_seconds":
             None, "drain": {"total": 3, "closed": 1, "forced": 2, "batches": 1},
             **seen.as_dict()}
    html = drainreport.render(drain)
    assert _shown(html, drain) >= 8 and "own settings" in html
    failed = {"node": "http://n", "result": "error", "exit_code": 1, "message": "refused"}
    assert _shown(drainreport.render(failed), failed) == 1
    rollout = {"result": "stopped", "exit_code": 3, "done": [], "failed": "http://a",
               "reason": "gate failed: x", "started_at": 100.0, "nodes": ["http://a"],
               "gates": ["error_rate < 1%"], "connections": [], "steps": [
                   {"node": "http://a", "step": "drain", "text": "t", "at": 100.5},
                   {"node": "http://a", "step": "stop", "text": "gate failed", "at": 103.0}]}
    html = rolloutreport.render(rollout)
    assert _shown(html, rollout) >= 4 and "stopped at http://a: gate failed: x" in html
