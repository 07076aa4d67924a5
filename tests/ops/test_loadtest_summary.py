"""``wsops loadtest``'s human summary: what is unknown reads ``n/a (why)``, never ``None``."""

from __future__ import annotations

from typing import Any

from wsops.loadtest.plan import Plan
from wsops.loadtest.runner import report
from wsops.ops.loadtest import summary


def result(scenario: str = "fanout", **figures: Any) -> dict[str, Any]:
    latency = {"p50_ms": figures.get("p50"), "p99_ms": figures.get("p99"),
               "p999_ms": figures.get("p999"), "max_ms": figures.get("max")}
    return {
        "plan": {"scenario": scenario},
        "connections": {"opened": 10, "requested": 10, "seconds_to_open": 0.5,
                        "per_second": figures.get("per_second"), "open_at_end": 10,
                        "errors": {}, "close_codes": {},
                        "connect_latency": {"p50_ms": figures.get("p50"),
                                            "p99_ms": figures.get("p99")}},
        "messages": {"acked": 0, "published": 0, "received": 0, "expected_deliveries": 0,
                     "deliveries_per_second": figures.get("dps"), "lost": 0, "sequence_gaps": 0,
                     "sequence_out_of_order": 0, "latency": latency},
        "server": {"cpu_seconds": 0.25, "cpu_us_per_delivery": figures.get("us"),
                   "rss_bytes_end": 2**20, "rss_bytes_per_connection": figures.get("rss"),
                   "connections_opened": figures.get("opened", 10)},
    }


def test_unknown_figures_say_why_they_are_missing() -> None:
    text = summary(result())
    assert "None" not in text and " - " not in text
    assert ("opened in 0.50s (n/a (no connection opened)), 10 open at the end; connect p50 "
            "n/a (no connection opened), p99 n/a (no connection opened)") in text
    assert "deliveries received (n/a (no time elapsed))" in text
    assert ("latency (publish to receive): p50 n/a (no message received), p99 n/a (no message "
            "received), p99.9 n/a (no message received), max n/a (no message received)") in text
    assert ("server: 0.25 s CPU (n/a (no message was delivered) per delivery), RSS 1.0 MiB, "
            "memory per connection n/a (fewer than 100 connections)") in text


def test_a_scenario_without_messages_says_so_and_no_server_says_how_to_get_one() -> None:
    idle = summary(result("idle", opened=1000, rss=22000))
    assert "(n/a (idle delivers no messages) per delivery)" in idle
    assert "22000 bytes per connection (RSS growth while 1000 connections opened)" in idle
    bare = summary({**result(), "server": None})
    assert bare.endswith("server: n/a (give --admin URL or --pid for its CPU and memory)")
    broken = summary({**result(), "server": {"error": None}})
    assert broken.endswith("server stats unavailable: a reading was missing")


def test_known_figures_keep_their_units() -> None:
    text = summary(result(p50=1.5, p99=3.0, p999=4.0, max=9.0, us=12.5, rss=2048, opened=100,
                          per_second=20, dps=5))
    assert "opened in 0.50s (20/s)" in text
    assert "connect p50 1.5 ms, p99 3.0 ms" in text
    assert "p50 1.5 ms, p99 3.0 ms, p99.9 4.0 ms, max 9.0 ms" in text
    assert ("server: 0.25 s CPU (12.5 us per delivery), RSS 1.0 MiB, 2048 bytes per connection "
            "(RSS growth while 100 connections opened)") in text


def test_the_report_divides_the_rss_growth_by_the_connections_opened() -> None:
    plan = Plan("idle", "ws://127.0.0.1:1/ws", connections=200, admin_url="http://x")
    shard = {"rooms": {}, "errors": {}, "close_codes": {}, "latency": {},
             "connect_latency": {}, "opened": 200, "elapsed": 1.0, "opened_in": 0.5,
             "open_at_end": 200}
    server: dict[str, dict[str, Any] | None] = {
              "start": {"cpu_seconds": 1.0, "rss_bytes": 50e6, "at": 100.0},
              "before": {"cpu_seconds": 1.5, "rss_bytes": 54e6, "connections": 200, "at": 101.0},
              "after": {"cpu_seconds": 2.0, "rss_bytes": 54e6, "at": 111.5}}
    s = report(plan, [shard], server)["server"]
    assert (s["rss_bytes_per_connection"], s["connections_opened"]) == (20000, 200)
    # What wsops plan's profile reads: CPU while connecting, and over the load window.
    assert (s["cpu_seconds_connecting"], s["cpu_seconds"], s["window_seconds"]) == (
        0.5, 0.5, 10.5)
    shrunk = {**server, "before": {**(server["before"] or {}), "rss_bytes": 49e6}}
    assert report(plan, [shard], shrunk)["server"]["rss_bytes_per_connection"] == 0
