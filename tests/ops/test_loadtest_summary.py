"""``wsops loadtest``'s human summary: what is unknown reads ``-``, never ``None``."""

from __future__ import annotations

from typing import Any

from wsops.ops.loadtest import summary


def result(**figures: Any) -> dict[str, Any]:
    latency = {"p50_ms": figures.get("p50"), "p99_ms": figures.get("p99"),
               "p999_ms": figures.get("p999"), "max_ms": figures.get("max")}
    return {
        "connections": {"opened": 10, "requested": 10, "seconds_to_open": 0.5, "per_second": 20,
                        "open_at_end": 10, "errors": {}, "close_codes": {},
                        "connect_latency": {"p50_ms": figures.get("p50"),
                                            "p99_ms": figures.get("p99")}},
        "messages": {"acked": 0, "published": 0, "received": 0, "expected_deliveries": 0,
                     "deliveries_per_second": 0, "lost": 0, "sequence_gaps": 0,
                     "sequence_out_of_order": 0, "latency": latency},
        "server": {"cpu_seconds": figures.get("cpu"), "cpu_us_per_delivery": figures.get("us"),
                   "rss_bytes_end": 2**20, "rss_bytes_per_connection": figures.get("rss")},
    }


def test_unknown_figures_read_as_a_dash() -> None:
    text = summary(result())
    assert "None" not in text
    assert "connect p50 -, p99 -" in text
    assert "latency (publish to receive): p50 -, p99 -, p99.9 -, max -" in text
    assert "server: - CPU (- per delivery), RSS 1.0 MiB, - per connection" in text


def test_known_figures_keep_their_units() -> None:
    text = summary(result(p50=1.5, p99=3.0, p999=4.0, max=9.0, cpu=0.25, us=12.5, rss=2048))
    assert "connect p50 1.5 ms, p99 3.0 ms" in text
    assert "p50 1.5 ms, p99 3.0 ms, p99.9 4.0 ms, max 9.0 ms" in text
    assert "server: 0.25 s CPU (12.5 us per delivery), RSS 1.0 MiB, 2048 bytes per connection" \
        in text
