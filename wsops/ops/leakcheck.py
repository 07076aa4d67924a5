"""Leak analysis over a series of heap samples (pure: no I/O, no clock).

A leak is memory that keeps growing, so suspects are ranked by *steady* growth across samples,
never by size at one moment. A series counts as steady when all of these hold:

- it grew at least ``min_growth`` from first to last sample, at ``min_rate`` or more per minute
  (least-squares slope);
- it rises monotonically: Kendall's tau-b between time and value is at least ``min_tau``
  (sawtooth churn, a buffer that fills and empties, scores near 0);
- the growth is spread out: no single step brings more than ``max_step_share`` of it (a cache
  filled once, a lazy import, one spike);
- it is not levelling off: the slope over the later half is at least ``late_ratio`` of the
  whole slope (a bounded structure reaching its bound, tracemalloc's view of a buffer that was
  allocated before tracing started and is being refilled).

The same test runs on allocation sites (tracemalloc bytes), object types (gc counts), and the
app's own leak checks. Two verdicts stand apart: WebSocket objects found by gc that outnumber
the open connections in most samples (closed connections still referenced), and RSS growth set
against traced growth (a hint that growth is native or fragmentation when only RSS grows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

Frame = tuple[str, int]
MAX_TAU_POINTS = 64  # tau is O(n^2): longer series are averaged into this many buckets
KIB, MIB = 1024.0, 1024.0 * 1024.0


@dataclass(frozen=True)
class Thresholds:
    """What counts as a steady leak; rates are per minute."""

    min_samples: int = 4
    min_tau: float = 0.6
    max_step_share: float = 0.6
    late_ratio: float = 0.4
    min_presence: float = 0.75  # share of samples a site/type must appear in
    # Measured noise floor, a healthy bundled server under churn and ~150 messages/s after
    # its history turned over: bounded sites up to ~85 KiB/min over 14-40 s windows (objects
    # reused from CPython's free lists keep the trace of their first allocation, so shares
    # drift slowly between lines). Lower it (--min-growth) for longer runs.
    site_min_rate: float = 128 * KIB
    site_min_growth: float = 32 * KIB
    type_min_rate: float = 60.0
    type_min_growth: float = 100.0
    check_min_rate: float = 1.0
    check_min_growth: float = 3.0
    ws_min_excess: int = 2
    ws_min_share: float = 0.8
    rss_min_rate: float = 1 * MIB
    rss_min_growth: float = 1 * MIB
    native_ratio: float = 0.25  # traced growth below this share of RSS growth: native hint


@dataclass(frozen=True)
class SiteStat:
    """One allocation site in one sample."""

    key: str
    file: str
    line: int
    size: int
    count: int
    traceback: tuple[Frame, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Sample:
    """One ``/admin/profile/sample`` answer, the parts the analysis reads."""

    t: float  # seconds on the node's monotonic clock
    sites: Mapping[str, SiteStat]
    types: Mapping[str, int]
    rss: float
    traced: float
    overhead: float = 0.0  # tracemalloc's own memory (in RSS, not a leak of the app)
    ws_objects: int = 0
    ws_open: int = 0
    ws_closed: int = 0
    checks: Mapping[str, float] = field(default_factory=dict)


def site_of(d: Mapping[str, Any]) -> SiteStat:
    tb = tuple((str(f[0]), int(f[1])) for f in d.get("traceback") or ())
    file, line = (str(d["file"]), int(d["line"])) if "file" in d else (tb[0] if tb else ("?", 0))
    return SiteStat(str(d.get("key") or f"{file}:{line}"), file, line, int(d["size"]),
                    int(d.get("count", 0)), tb)


def parse_sample(d: Mapping[str, Any]) -> Sample:
    """A sample from its JSON form (``KeyError``/``ValueError``/``TypeError`` if malformed)."""
    sites = {s.key: s for s in map(site_of, d.get("sites") or ())}
    ws = d.get("websockets") or {}
    return Sample(
        float(d["monotonic"]), sites, {str(k): int(v) for k, v in (d.get("types") or {}).items()},
        float(d.get("rss_bytes") or 0), float(d.get("traced_bytes") or 0),
        float(d.get("tracemalloc_overhead_bytes") or 0), int(ws.get("objects", 0)),
        int(ws.get("open_connections", 0)), int(ws.get("closed_objects", 0)),
        {str(k): float(v) for k, v in (d.get("checks") or {}).items()},
    )


# -- one series ------------------------------------------------------------------------------


def slope_per_minute(ts: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope, in units per minute (0 with fewer than 2 distinct times)."""
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var <= 0:
        return 0.0
    return 60.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


def _buckets(ys: Sequence[float], n: int) -> list[float]:
    if len(ys) <= n:
        return list(ys)
    out = []
    for i in range(n):
        part = ys[i * len(ys) // n : (i + 1) * len(ys) // n]
        out.append(sum(part) / len(part))
    return out


def kendall_tau(ys: Sequence[float]) -> float:
    """Kendall's tau-b between sample order and value: 1 rising, -1 falling, ~0 no trend."""
    ys = _buckets(ys, MAX_TAU_POINTS)
    n = len(ys)
    conc = disc = ties = 0
    for i in range(n):
        yi = ys[i]
        for j in range(i + 1, n):
            if ys[j] > yi:
                conc += 1
            elif ys[j] < yi:
                disc += 1
            else:
                ties += 1
    pairs = n * (n - 1) // 2
    denom = math.sqrt(pairs * (pairs - ties))
    return (conc - disc) / denom if denom else 0.0


@dataclass(frozen=True)
class Trend:
    """How one series moved over the samples."""

    points: int
    first: float
    last: float
    slope: float  # per minute, least squares over all points
    late_slope: float  # per minute, over the later half
    tau: float  # Kendall tau-b: monotonicity
    up_fraction: float  # share of steps that went up
    max_step_share: float  # the biggest rise of one step over the whole growth

    @property
    def growth(self) -> float:
        return self.last - self.first


def trend(ts: Sequence[float], ys: Sequence[float]) -> Trend:
    n = len(ys)
    if n == 0:
        return Trend(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    steps = [b - a for a, b in pairwise(ys)]
    growth = ys[-1] - ys[0]
    biggest = max([s for s in steps if s > 0], default=0.0)
    half = n // 2
    return Trend(
        n, ys[0], ys[-1], slope_per_minute(ts, ys),
        slope_per_minute(ts[half:], ys[half:]) if n - half >= 2 else 0.0,
        kendall_tau(ys),
        sum(1 for s in steps if s > 0) / len(steps) if steps else 0.0,
        biggest / growth if growth > 0 else 1.0,
    )


def why_not_steady(tr: Trend, min_rate: float, min_growth: float, th: Thresholds,
                   unit: str = "") -> str | None:
    """None when ``tr`` is steady growth; else the first reason it is not."""
    if tr.points < th.min_samples:
        return f"only {tr.points} samples (need {th.min_samples})"
    if tr.growth < min_growth:
        return f"grew {fmt(tr.growth, unit)} (< {fmt(min_growth, unit)})"
    if tr.slope < min_rate:
        return f"{fmt(tr.slope, unit)}/min (< {fmt(min_rate, unit)}/min)"
    if tr.tau < th.min_tau:
        return f"not steady: monotonicity {tr.tau:.2f} (< {th.min_tau}), churn"
    if tr.max_step_share > th.max_step_share:
        return f"one jump: {tr.max_step_share:.0%} of the growth in one step"
    if tr.late_slope < th.late_ratio * tr.slope:
        return "levelling off: the later half grows much slower"
    return None


def fmt(value: float, unit: str = "") -> str:
    """``1.5 MiB`` for bytes (``unit="B"``), plain numbers otherwise."""
    if unit != "B":
        return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.2g}"
    for name, scale in (("GiB", MIB * KIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {name}"
    return f"{value:.0f} B"


# -- the whole report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One growing series (a site, a type, a check) and whether it is a suspect."""

    kind: str  # "site" | "type" | "check"
    name: str
    trend: Trend
    reason: str | None  # why it is not a suspect; None: it is one
    site: SiteStat | None = None  # the latest stat of a site
    ts: tuple[float, ...] = ()  # the series itself: seconds from the first sample
    ys: tuple[float, ...] = ()

    @property
    def suspect(self) -> bool:
        return self.reason is None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "suspect": self.suspect,
                               "reason": self.reason, **asdict(self.trend),
                               "growth": self.trend.growth,
                               "series": {"t": [round(t, 3) for t in self.ts],
                                          "y": list(self.ys)}}
        if self.site is not None:
            s = self.site
            out.update(file=s.file, line=s.line, size=s.size, count=s.count,
                       traceback=[list(f) for f in s.traceback])
        return out


@dataclass(frozen=True)
class WsVerdict:
    """gc-found WebSocketResponse objects against open connections."""

    suspect: bool
    samples: int
    excess_last: int
    excess_min: int
    objects_last: int
    open_last: int
    closed_last: int
    excess_trend: Trend


@dataclass(frozen=True)
class MemoryVerdict:
    rss: Trend  # RSS minus tracemalloc's own memory
    traced: Trend
    native: bool  # RSS grows steadily, traced memory does not: outside the Python heap
    hint: str


@dataclass(frozen=True)
class Report:
    samples: int
    seconds: float
    sites: list[Finding]
    types: list[Finding]
    checks: list[Finding]
    websockets: WsVerdict
    memory: MemoryVerdict
    timeline: dict[str, list[float]] = field(default_factory=dict)  # t, rss, traced, ...

    @property
    def suspects(self) -> int:
        found = sum(f.suspect for f in [*self.sites, *self.types, *self.checks])
        return found + int(self.websockets.suspect)

    def as_dict(self) -> dict[str, Any]:
        ws, mem = self.websockets, self.memory
        return {
            "samples": self.samples, "seconds": self.seconds, "suspects": self.suspects,
            "sites": [f.as_dict() for f in self.sites],
            "types": [f.as_dict() for f in self.types],
            "checks": [f.as_dict() for f in self.checks],
            "websockets": {**asdict(ws), "excess_trend": asdict(ws.excess_trend)},
            "memory": {"rss": asdict(mem.rss), "traced": asdict(mem.traced),
                       "native": mem.native, "hint": mem.hint},
            "timeline": self.timeline,
        }


def _series(samples: Sequence[Sample], values: Sequence[Mapping[str, float]],
            th: Thresholds) -> dict[str, tuple[list[float], list[float]]]:
    """Per key, the (times, values) of the samples it appears in, if it appears often enough."""
    keys: dict[str, None] = {}
    for v in values:
        keys.update(dict.fromkeys(v))
    n = len(samples)
    out = {}
    for key in keys:
        ts = [s.t for s, v in zip(samples, values, strict=True) if key in v]
        if len(ts) >= max(2, th.min_presence * n) and key in values[-1]:
            out[key] = (ts, [v[key] for v in values if key in v])
    return out


def _rank(findings: list[Finding], top: int) -> list[Finding]:
    """Suspects first, by growth rate; then the fastest growers that are not (their reason
    says why), down to ``top`` in all; shrinking series are left out."""
    suspects = sorted((f for f in findings if f.suspect), key=lambda f: -f.trend.slope)
    others = sorted((f for f in findings if not f.suspect and f.trend.slope > 0),
                    key=lambda f: -f.trend.slope)
    return [*suspects, *others[: max(0, top - len(suspects))]]


def analyze(samples: Sequence[Sample], th: Thresholds | None = None, top: int = 15) -> Report:
    """Rank what grows steadily across ``samples`` (in time order)."""
    th = th or Thresholds()
    if not samples:
        raise ValueError("no samples")
    t0 = samples[0].t
    samples = [Sample(s.t - t0, s.sites, s.types, s.rss, s.traced, s.overhead, s.ws_objects,
                      s.ws_open, s.ws_closed, s.checks) for s in samples]
    ts = [s.t for s in samples]

    def findings(kind: str, values: Sequence[Mapping[str, float]], min_rate: float,
                 min_growth: float, unit: str = "") -> list[Finding]:
        out = []
        for key, (kts, ys) in _series(samples, values, th).items():
            tr = trend(kts, ys)
            site = samples[-1].sites[key] if kind == "site" else None
            out.append(Finding(kind, key, tr, why_not_steady(tr, min_rate, min_growth, th, unit),
                               site, tuple(kts), tuple(ys)))
        return out

    sizes = [{k: float(v.size) for k, v in s.sites.items()} for s in samples]
    sites = findings("site", sizes, th.site_min_rate, th.site_min_growth, "B")
    counts = [{k: float(v) for k, v in s.types.items()} for s in samples]
    types = findings("type", counts, th.type_min_rate, th.type_min_growth)
    checks = findings("check", [s.checks for s in samples], th.check_min_rate,
                      th.check_min_growth)
    checks.sort(key=lambda f: (not f.suspect, f.name))
    timeline = {"t": [round(t, 3) for t in ts], "rss": [s.rss - s.overhead for s in samples],
                "traced": [s.traced for s in samples],
                "ws_excess": [float(s.ws_objects - s.ws_open) for s in samples]}
    return Report(len(samples), ts[-1], _rank(sites, top), _rank(types, top), checks,
                  _websockets(samples, th), _memory(samples, th), timeline)


def _websockets(samples: Sequence[Sample], th: Thresholds) -> WsVerdict:
    excess = [s.ws_objects - s.ws_open for s in samples]
    over = sum(1 for e in excess if e >= th.ws_min_excess)
    suspect = (len(samples) >= th.min_samples and excess[-1] >= th.ws_min_excess
               and over >= th.ws_min_share * len(samples))
    last = samples[-1]
    return WsVerdict(suspect, len(samples), excess[-1], min(excess), last.ws_objects,
                     last.ws_open, last.ws_closed,
                     trend([s.t for s in samples], [float(e) for e in excess]))


def _memory(samples: Sequence[Sample], th: Thresholds) -> MemoryVerdict:
    ts = [s.t for s in samples]
    rss = trend(ts, [s.rss - s.overhead for s in samples])
    traced = trend(ts, [s.traced for s in samples])
    rss_grows = why_not_steady(rss, th.rss_min_rate, th.rss_min_growth, th, "B") is None
    traced_grows = why_not_steady(traced, th.site_min_rate, th.site_min_growth, th, "B") is None
    rates = f"RSS {fmt(rss.slope, 'B')}/min, traced {fmt(traced.slope, 'B')}/min"
    if rss_grows and traced.slope < th.native_ratio * rss.slope:
        return MemoryVerdict(rss, traced, True, (
            f"RSS grows steadily but traced Python memory does not ({rates}): the growth is "
            "outside what tracemalloc sees. Native allocations (C extensions, TLS or "
            "compression buffers) or fragmentation (the node returns free heap memory with "
            "malloc_trim before it reads RSS, so memory the allocator merely kept is not "
            "counted); compare over a longer run, or with PYTHONMALLOC=malloc to tell "
            "fragmentation from a native leak."))
    if rss_grows:
        return MemoryVerdict(rss, traced, False, (
            f"RSS grows with traced memory ({rates}): Python-level growth, see the sites."))
    if traced_grows:
        return MemoryVerdict(rss, traced, False, (
            f"Traced memory grows, RSS not steadily ({rates}): the process reuses memory it had "
            "freed, or buffers allocated before tracing started are being refilled."))
    return MemoryVerdict(rss, traced, False, f"No steady growth of RSS or traced memory "
                                             f"({rates}).")
