"""Full-jitter exponential backoff, with a pinned random source."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsops.backoff import (
    RECONNECT_HINT_CAP,
    Backoff,
    backoff_window,
    full_jitter,
    hint_reason,
    parse_retry_after,
    reconnect_hint,
)


def upper(low: float, high: float) -> float:
    """A 'random' source that always draws the top of the window."""
    return high


def test_window_doubles_from_base_until_cap() -> None:
    windows = [backoff_window(n, 0.2, 10.0) for n in range(8)]
    assert windows == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0])


def test_window_of_a_huge_attempt_is_the_cap_without_overflow() -> None:
    assert backoff_window(10_000, 0.2, 10.0) == 10.0


def test_negative_attempt_is_rejected() -> None:
    with pytest.raises(ValueError):
        backoff_window(-1, 0.2, 10.0)


def test_full_jitter_draws_from_zero_to_the_window() -> None:
    calls: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        calls.append((low, high))
        return (low + high) / 2

    assert full_jitter(3, 0.2, 10.0, record) == pytest.approx(0.8)
    assert len(calls) == 1
    assert calls[0] == pytest.approx((0.0, 1.6))


@given(st.integers(0, 200), st.floats(0.001, 5.0), st.floats(0.0, 1.0))
def test_jittered_delay_stays_within_zero_and_cap(attempt: int, base: float, frac: float) -> None:
    cap = base * 50
    delay = full_jitter(attempt, base, cap, lambda lo, hi: lo + frac * (hi - lo))
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(attempt, 62))


def test_backoff_advances_and_resets() -> None:
    b = Backoff(0.2, 10.0, upper)
    assert [b.next_delay() for _ in range(4)] == pytest.approx([0.2, 0.4, 0.8, 1.6])
    assert b.attempt == 4
    b.reset()
    assert b.next_delay() == pytest.approx(0.2)


def test_backoff_with_real_randomness_is_spread_out() -> None:
    rng = random.Random(7)
    b = Backoff(1.0, 1.0, rng.uniform)
    delays = [b.next_delay() for _ in range(200)]
    assert all(0.0 <= d <= 1.0 for d in delays)
    assert min(delays) < 0.1 and max(delays) > 0.9  # full jitter: the whole window is used


def test_retry_after_is_waited_first_then_jitter_on_top() -> None:
    b = Backoff(0.2, 10.0, upper)
    assert b.next_delay(retry_after=3.0) == pytest.approx(3.2)
    assert b.next_delay(retry_after=3600.0) == pytest.approx(10.4)  # capped Retry-After
    assert b.next_delay(retry_after=None) == pytest.approx(0.8)


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (1.0, 0.0), (2.0, 1.0)])
def test_bad_parameters_are_rejected(base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base, cap)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5.0),
        (" 1.5 ", 1.5),
        ("-1", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        (None, None),
    ],
)
def test_retry_after_header_parsing(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_the_exponent_stops_at_62() -> None:
    inf = float("inf")
    assert backoff_window(62, 1.0, inf) == 2.0**62
    assert backoff_window(63, 1.0, inf) == 2.0**62
    assert backoff_window(61, 1.0, inf) == 2.0**61


def test_retry_after_of_zero_one_or_a_fraction_is_parsed_and_waited() -> None:
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(" 1 ") == 1.0
    assert parse_retry_after("-0.5") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after(None) is None
    b = Backoff(0.2, 10.0, upper)
    assert b.next_delay(0.5) == pytest.approx(0.2 + 0.5)  # a second or less still counts
    assert b.next_delay(1.0) == pytest.approx(0.4 + 1.0)
    assert b.next_delay(-0.5) == pytest.approx(0.8)  # a negative one is ignored
    assert b.next_delay(0.0) == pytest.approx(1.6)


def test_bad_backoff_settings_are_refused_with_what_is_wrong() -> None:
    for base, cap in ((0.0, 1.0), (-1.0, 1.0), (0.2, 0.0), (0.2, -1.0)):
        with pytest.raises(ValueError, match=r"^backoff base and cap must be > 0$"):
            Backoff(base, cap)
    with pytest.raises(ValueError, match=r"^backoff cap must be >= base$"):
        Backoff(1.0, 0.5)
    Backoff(0.5, 0.5)  # equal is fine


def test_the_client_uses_the_documented_defaults() -> None:
    import inspect

    from wsops.backoff import DEFAULT_BASE, DEFAULT_CAP
    from wsops.client import Client

    assert (DEFAULT_BASE, DEFAULT_CAP) == (0.2, 10.0)
    params = inspect.signature(Client).parameters
    assert params["backoff_base"].default is DEFAULT_BASE
    assert params["backoff_cap"].default is DEFAULT_CAP
    b = Backoff()
    assert (b.base, b.cap) == (0.2, 10.0)


@pytest.mark.parametrize(("code", "reason", "window"), [
    (1012, "draining; reconnect=5000", 5.0),
    (1012, "reconnect=250", 0.25),
    (1012, "reconnect=250ms", 0.25),
    (1012, "draining,reconnect=1 more", 0.001),
    (1012, "draining reconnect=0", 0.0),
    (1012, "draining; reconnect=60001", RECONNECT_HINT_CAP),
    (1012, "draining; reconnect=999999999", RECONNECT_HINT_CAP),
    (1012, "draining", None),
    (1012, "", None),
    (1012, "xreconnect=5000", None),
    (1012, "reconnect=5000x", None),
    (1012, "reconnect=-5", None),
    (1012, "reconnect=1234567890", None),  # ten digits: not a hint this protocol sends
    (1001, "draining; reconnect=5000", None),
    (4000, "reconnect=5000", None),
])
def test_reconnect_hint_is_a_1012_reasons_token(code: int, reason: str,
                                                window: float | None) -> None:
    assert reconnect_hint(code, reason) == window


def test_hint_reason_is_read_back_and_zero_adds_none() -> None:
    assert hint_reason("draining", 5.0) == "draining; reconnect=5000"
    assert hint_reason("draining", 0.0) == "draining"
    assert hint_reason("draining", 0.0004) == "draining; reconnect=0"
    assert reconnect_hint(1012, hint_reason("draining", 2.5)) == 2.5
    assert RECONNECT_HINT_CAP == 60.0


def test_spread_draws_over_the_window_capped_and_counts_an_attempt() -> None:
    draws: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        draws.append((low, high))
        return high / 2

    b = Backoff(0.2, 10.0, uniform=record)
    assert b.spread(30.0) == 15.0  # the server's window, beyond the client's own cap
    assert b.spread(600.0) == RECONNECT_HINT_CAP / 2
    assert draws == [(0.0, 30.0), (0.0, RECONNECT_HINT_CAP)]
    assert b.attempt == 2
