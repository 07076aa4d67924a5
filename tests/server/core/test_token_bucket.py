"""Token bucket."""

from __future__ import annotations

from wsops.server.core.token_bucket import TokenBucket


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


def test_a_refused_event_keeps_what_was_refilled() -> None:
    b = TokenBucket(rate=1.0, burst=1, now=0.0)
    assert b.allow(0.0) is True
    assert b.allow(0.5) is False  # 0.5 token refilled, kept
    assert b.allow(1.0) is True  # 0.5 + 0.5


def test_a_new_bucket_has_no_strikes_and_a_full_burst() -> None:
    b = TokenBucket(rate=1.0, burst=5, now=0.0)
    assert (b.strikes, b.tokens) == (0, 5)


def test_bad_settings_are_refused() -> None:
    import pytest

    for rate, burst in ((0.0, 1), (-1.0, 1), (1.0, 0.5), (1.0, 0)):
        with pytest.raises(ValueError, match=r"^rate must be > 0 and burst >= 1$"):
            TokenBucket(rate, burst, 0.0)
    TokenBucket(0.001, 1, 0.0)  # the smallest allowed


def test_several_tokens_are_taken_all_or_none() -> None:
    bucket = TokenBucket(rate=1.0, burst=100, now=0.0)
    assert bucket.allow(0.0, 60)
    assert not bucket.allow(0.0, 41) and bucket.tokens == 40  # none taken
    assert bucket.allow(1.0, 41)  # one more token came
