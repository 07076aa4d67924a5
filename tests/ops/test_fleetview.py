"""Targets, rows, sorting and formats of ``wsops status``/``top`` (pure, no server)."""

from __future__ import annotations

import json
import math

import pytest
from rich.console import Console

from wsops.memory_per_connection import MIN_CONNECTIONS
from wsops.ops.fleetview import (
    MEM_PER_CONN_NOTE,
    as_json,
    failed,
    fmt_bytes,
    fmt_mem_per_conn,
    fmt_rate,
    fmt_seconds,
    fmt_uptime,
    normalize_url,
    render,
    sort_views,
    summary,
    targets,
    view_of,
)


def test_urls_default_to_http_and_websocket_urls_are_refused() -> None:
    assert normalize_url(" 10.0.0.1:9765/ ") == "http://10.0.0.1:9765"
    assert normalize_url("https://node-1.example:9765") == "https://node-1.example:9765"
    for bad in ("ws://h:8765/ws", "wss://h/ws", "ftp://h", "http://", "h:notaport"):
        with pytest.raises(ValueError):
            normalize_url(bad)


def test_targets_come_from_args_and_file_else_the_environment_once_each() -> None:
    listing = "# fleet\nnode-1:9765\n\n node-2:9765  # spare\nnode-1:9765\n"
    assert targets(["node-3:9765"], listing, "ignored:1") == [
        "http://node-3:9765", "http://node-1:9765", "http://node-2:9765"]
    assert targets([], None, "a:1, b:2  c:3,,") == ["http://a:1", "http://b:2", "http://c:3"]
    with pytest.raises(ValueError, match="no nodes"):
        targets([], "# only comments\n", None)


STATS = {
    "version": "0.1.0", "uptime_seconds": 3725.0, "ready": True, "not_ready_reasons": [],
    "draining": False, "connections": 40, "messages_in_per_second": 12.5,
    "messages_out_per_second": 2500.0, "delivery_p99_seconds": math.inf,
    "loop_lag_p99_seconds": 0.002, "rss_bytes": 80 * 2**20,
    "memory_per_connection_bytes": 2 * 2**20, "drain": {"state": "idle"},
}


def test_a_row_reads_the_stats_and_states_follow_readiness_and_drain() -> None:
    row = view_of("http://a:1", STATS)
    assert (row.up, row.state, row.connections, row.out_rate) == (True, "ready", 40, 2500.0)
    draining = view_of("http://a:1", {**STATS, "ready": False, "draining": True,
                                      "not_ready_reasons": ["draining", "draining"],
                                      "drain": {"state": "drained"}})
    assert (draining.state, draining.reasons) == ("drained", ("draining",))
    broker = view_of("http://a:1", {**STATS, "ready": False, "not_ready_reasons": ["broker down"]})
    assert broker.state == "not ready"
    empty = view_of("http://a:1", {"memory_per_connection_bytes": 0.0})
    assert (empty.mem_per_conn, empty.connections, empty.rss) == (None, None, None)


def test_sorting_puts_the_highest_first_and_nodes_that_are_down_last() -> None:
    big = view_of("http://b:1", {**STATS, "connections": 90, "rss_bytes": 1.0})
    small = view_of("http://a:1", {**STATS, "connections": 10})
    down = failed("http://0:1", "cannot connect", down=True)
    assert [v.url for v in sort_views([down, small, big], "connections")] == [
        "http://b:1", "http://a:1", "http://0:1"]
    assert [v.url for v in sort_views([down, small, big], "rss")] == [
        "http://a:1", "http://b:1", "http://0:1"]
    with pytest.raises(ValueError):
        sort_views([small], "cpu")


def test_formats_and_json_stay_readable_and_valid() -> None:
    assert [fmt_bytes(n) for n in (None, 512, 14.5 * 1024, 3 * 2**30)] == [
        "-", "512 B", "14.5 KiB", "3.0 GiB"]
    assert [fmt_seconds(s) for s in (None, 0.0004, 0.0025, 1.5, math.inf)] == [
        "-", "400 µs", "2.5 ms", "1.50 s", "+Inf"]
    assert [fmt_rate(r) for r in (None, 2.25, 42.4, 12_345.0)] == ["-", "2.2", "42", "12.3k"]
    assert [fmt_uptime(s) for s in (None, 5, 125, 3725, 90_000)] == [
        "-", "5s", "2m05s", "1h02m", "1d01h"]
    views = [view_of("http://a:1", STATS), failed("http://b:1", "401 Unauthorized", down=False)]
    data = json.loads(json.dumps(as_json(views), allow_nan=False))
    assert (data["up"], data["down"], data["connections"]) == (1, 1, 40)
    assert data["nodes"][0]["delivery_p99_seconds"] is None  # +Inf is not JSON
    assert data["nodes"][1]["status"] == "error"
    assert summary(views) == "2 nodes: 1 up, 1 down · 40 connections · 12 msg/s in, 2.5k msg/s out"


def test_memory_per_connection_shows_from_min_connections_up_and_says_what_it_is() -> None:
    few = view_of("http://a:1", STATS)  # 40 connections
    many = view_of("http://b:1", {**STATS, "connections": MIN_CONNECTIONS})
    silent = view_of("http://c:1", {k: v for k, v in STATS.items()
                                    if k != "memory_per_connection_bytes"})
    assert (few.mem_per_conn, many.mem_per_conn, silent.mem_per_conn) == (None, 2 * 2**20, None)
    assert [fmt_mem_per_conn(v) for v in (few, many, silent)] == ["n/a", "2.0 MiB", "-"]
    assert as_json([few])["nodes"][0]["memory_per_connection_bytes"] is None
    console = Console(width=200, record=True)
    console.print(render([few, many]))
    text = console.export_text()
    assert MEM_PER_CONN_NOTE in text
    assert "divided by the connections; n/a below 100 connections" in text
