"""Token bucket."""

from __future__ import annotations

from wsops.server.ratelimit import TokenBucket


def test_burst_then_rate() -> None:
    b = TokenBucket(rate=10.0, burst=3, now=0.0)
    assert [b.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.strikes == 1
    assert not b.allow(0.05)
    assert b.strikes == 2
    assert b.allow(0.2)
    assert b.strikes == 0


def test_refill_is_capped_at_burst() -> None:
    b = TokenBucket(rate=100.0, burst=2, now=0.0)
    assert sum(b.allow(1000.0) for _ in range(5)) == 2
