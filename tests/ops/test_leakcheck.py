"""The leak analysis on synthetic series: steady growth is flagged, churn and spikes are not."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import pytest

from wsops.ops.leakcheck import (
    KIB,
    MIB,
    Finding,
    Sample,
    SiteStat,
    Thresholds,
    analyze,
    kendall_tau,
    parse_sample,
    slope_per_minute,
    trend,
    why_not_steady,
)

N, STEP = 13, 5.0  # a minute of samples, 5 s apart
TIMES = [i * STEP for i in range(N)]


def series(f: Callable[[int], float]) -> list[float]:
    return [f(i) for i in range(N)]


LEAK = series(lambda i: 1 * MIB + i * 20 * KIB)  # 240 KiB/min, every step up
SAWTOOTH = series(lambda i: 1 * MIB + (i % 4) * 200 * KIB)  # churn: fills, empties
SPIKE = series(lambda i: 1 * MIB + (5 * MIB if i == 6 else 0))
JUMP = series(lambda i: 1 * MIB + (2 * MIB if i >= 6 else 0))  # a cache filled once
PLATEAU = series(lambda i: 1 * MIB + 2 * MIB * (1 - math.exp(-i / 2)))  # refill, then flat


def samples(sites: dict[str, Sequence[float]], types: dict[str, Sequence[float]] | None = None,
            ws: Sequence[tuple[int, int]] | None = None, rss: Sequence[float] | None = None,
            traced: Sequence[float] | None = None,
            checks: dict[str, Sequence[float]] | None = None) -> list[Sample]:
    out = []
    for i, t in enumerate(TIMES):
        stats = {k: SiteStat(k, f"/app/{k}.py", 10, int(v[i]), i + 1, ((f"/app/{k}.py", 10),))
                 for k, v in sites.items()}
        objects, open_ = ws[i] if ws else (0, 0)
        out.append(Sample(
            1000.0 + t, stats, {k: int(v[i]) for k, v in (types or {}).items()},
            rss[i] if rss else 50 * MIB, traced[i] if traced else 1 * MIB, 0.0, objects, open_,
            0, {k: v[i] for k, v in (checks or {}).items()}))
    return out


def verdicts(findings: Sequence[Finding]) -> dict[str, bool]:
    return {f.name: f.suspect for f in findings}


def test_slope_is_least_squares_per_minute() -> None:
    assert slope_per_minute([0, 30, 60], [0, 50, 100]) == pytest.approx(100)
    assert slope_per_minute([0], [5]) == 0
    assert slope_per_minute([1, 1], [0, 5]) == 0


def test_kendall_tau_rises_falls_and_ignores_ties_and_churn() -> None:
    assert kendall_tau([1, 2, 3, 4]) == pytest.approx(1)
    assert kendall_tau([4, 3, 2, 1]) == pytest.approx(-1)
    assert kendall_tau([1, 1, 2, 2, 3, 3]) > 0.85  # a staircase is still monotonic
    assert abs(kendall_tau(SAWTOOTH)) < 0.3
    assert kendall_tau([5, 5, 5]) == 0
    assert kendall_tau(list(range(1000))) == pytest.approx(1)  # long series are bucketed


def test_steady_leak_is_flagged_and_ranked_first() -> None:
    report = analyze(samples({"leak": LEAK, "small": series(lambda i: 1000 + i * 10)}))
    assert [f.name for f in report.sites][:1] == ["leak"]
    leak = report.sites[0]
    assert leak.suspect and leak.trend.slope == pytest.approx(240 * KIB)
    assert leak.trend.tau == pytest.approx(1) and leak.trend.up_fraction == 1
    assert leak.site is not None and leak.site.where == "/app/leak.py:10"
    assert report.suspects == 1


def test_sawtooth_churn_is_not_flagged_even_when_big() -> None:
    report = analyze(samples({"churn": SAWTOOTH}))
    [churn] = report.sites
    assert not churn.suspect and churn.reason is not None
    assert report.suspects == 0


def test_a_single_spike_is_not_flagged() -> None:
    report = analyze(samples({"spike": SPIKE}))
    assert report.suspects == 0  # back to its level: no growth at all


def test_a_spike_at_the_end_or_one_jump_is_not_flagged() -> None:
    late_spike = [*SPIKE[:-1], SPIKE[6]]
    report = analyze(samples({"late": late_spike, "jump": JUMP}))
    assert report.suspects == 0
    reasons = {f.name: f.reason or "" for f in report.sites}
    assert "jump" in reasons["late"] or "steady" in reasons["late"]
    assert "jump" in reasons["jump"]


def test_growth_that_levels_off_is_not_flagged() -> None:
    report = analyze(samples({"refill": PLATEAU}))
    [refill] = report.sites
    assert not refill.suspect and "levelling off" in (refill.reason or "")


def test_noisy_leak_is_still_flagged_but_slow_growth_is_not() -> None:
    rng = random.Random(7)
    noisy = [v + rng.uniform(-8, 8) * KIB for v in LEAK]
    slow = series(lambda i: 1 * MIB + i * 1 * KIB)  # 12 KiB/min: below the threshold
    report = analyze(samples({"noisy": noisy, "slow": slow}))
    assert verdicts(report.sites) == {"noisy": True, "slow": False}


def test_too_few_samples_flag_nothing() -> None:
    short = samples({"leak": LEAK})[:3]
    assert analyze(short).suspects == 0


def test_sites_seen_in_few_samples_are_skipped() -> None:
    s = samples({"leak": LEAK})
    gappy = [Sample(x.t, {} if i < 6 else x.sites, x.types, x.rss, x.traced)
             for i, x in enumerate(s)]
    assert analyze(gappy).sites == []


def test_object_types_with_growing_counts() -> None:
    report = analyze(samples({}, types={
        "myapp.Session": series(lambda i: 100 + 30 * i),  # 360/min
        "dict": series(lambda i: 5000 + (300 if i % 2 else 0)),
    }))
    assert verdicts(report.types) == {"myapp.Session": True}  # dict does not grow: left out
    assert report.suspects == 1


def test_closed_websockets_still_referenced_are_flagged() -> None:
    leaking = [(10 + 2 * i, 10) for i in range(N)]
    healthy = [(10 + (1 if i == 4 else 0), 10) for i in range(N)]  # one mid-handshake
    assert analyze(samples({}, ws=leaking)).websockets.suspect
    ok = analyze(samples({}, ws=healthy)).websockets
    assert not ok.suspect and ok.excess_last == 0


def test_app_leak_checks_flag_steady_growth_only() -> None:
    report = analyze(samples({}, checks={
        "rooms_without_subscribers": series(lambda i: float(i)),
        "transient": series(lambda i: float(i % 2)),
    }))
    flagged = {f.name for f in report.checks if f.suspect}
    assert flagged == {"rooms_without_subscribers"}


def test_rss_growing_without_traced_growth_hints_native() -> None:
    rss = series(lambda i: 100 * MIB + i * 1 * MIB)  # 12 MiB/min
    report = analyze(samples({}, rss=rss, traced=series(lambda i: 2 * MIB)))
    assert report.memory.native and "native" in report.memory.hint.lower()
    both = analyze(samples({}, rss=rss, traced=series(lambda i: 2 * MIB + i * 1 * MIB)))
    assert not both.memory.native and "Python-level" in both.memory.hint
    flat = analyze(samples({}, rss=series(lambda i: 100 * MIB + (i % 3) * MIB)))
    assert not flat.memory.native and flat.memory.hint.startswith("No steady growth")
    assert report.suspects == 0  # a hint, not a suspect


def test_why_not_steady_explains() -> None:
    th = Thresholds()
    assert why_not_steady(trend(TIMES, LEAK), th.site_min_rate, 0, th) is None
    churn = [5.0, 1, 6, 2, 7, 3, 8, 1, 6, 2, 7, 3, 9]  # ends higher, but no steady rise
    assert kendall_tau(churn) < th.min_tau
    assert "monotonicity" in (why_not_steady(trend(TIMES, churn), 1, 0, th) or "")
    assert "grew" in (why_not_steady(trend(TIMES, LEAK), 1, 10 * MIB, th) or "")
    assert "/min" in (why_not_steady(trend(TIMES, LEAK), 10 * MIB, 0, th) or "")


def test_parse_sample_reads_the_endpoint_shape() -> None:
    s = parse_sample({
        "monotonic": 12.5, "rss_bytes": 100, "traced_bytes": 10,
        "tracemalloc_overhead_bytes": 3,
        "sites": [{"key": "a.py:3", "file": "a.py", "line": 3, "size": 64, "count": 2,
                   "traceback": [["a.py", 3], ["b.py", 9]]}],
        "types": {"dict": 7},
        "websockets": {"objects": 4, "closed_objects": 1, "open_connections": 3, "excess": 1},
        "checks": {"x": 1},
    })
    assert s.t == 12.5 and s.sites["a.py:3"].traceback == (("a.py", 3), ("b.py", 9))
    assert (s.ws_objects, s.ws_open, s.ws_closed, s.types["dict"]) == (4, 3, 1, 7)
