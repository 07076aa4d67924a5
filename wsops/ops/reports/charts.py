"""Inline SVG charts for the HTML reports (pure: numbers in, markup out; no script, no network).

Every plotted series carries ``data-key`` (the JSON path of what it plots, in the command's
``--json`` output) and ``data-value`` (the plotted numbers as JSON), so a test can hold each
chart to the report's data. Axes get "nice" ticks (1, 2, 5 x 10^n); a latency histogram has a
logarithmic x axis; reference lines (an SLO, a deadline) are drawn dashed with their label.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

PALETTE = ("#1f6feb", "#d1242f", "#8250df", "#1a7f37", "#bf8700", "#0a7f8f", "#cf222e",
           "#6e7781")
Number = float | int
Format = Callable[[float], str]


def plain(value: float) -> str:
    """Counts and rates as people read them: ``1,234``, ``12.5``, ``0.25``."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
    return f"{value:.3g}"


def size(value: float, digits: int = 1) -> str:
    """Bytes as ``1.5 MiB``."""
    for name, scale in (("GiB", 2.0 ** 30), ("MiB", 2.0 ** 20), ("KiB", 1024.0)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f} {name}"
    return f"{value:.0f} B"


def _distinct(fmt: Format, ticks: Sequence[float]) -> Format:
    """``fmt``, or a finer one when it would print two ticks alike (a narrow range of sizes)."""
    if len({fmt(t) for t in ticks}) == len(ticks):
        return fmt
    for digits in (2, 3, 4):
        def finer(v: float, digits: int = digits) -> str:
            return size(v, digits) if fmt is size else f"{v:,.{digits}f}"
        if len({finer(t) for t in ticks}) == len(ticks):
            return finer
    return fmt


def ms(value: float) -> str:
    return f"{plain(value)} ms"


def percent(value: float) -> str:
    return f"{plain(value)}%"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values covering ``lo``..``hi`` (steps of 1, 2 or 5 x 10^n)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, k = [], 0
    while (t := first + k * step) <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        k += 1
    if ticks[-1] < hi:
        ticks.append(round(first + k * step, 12))
    return ticks


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def pointer(*parts: str | int) -> str:
    """A JSON Pointer (RFC 6901) to ``parts``; any text may be a part (``~`` and ``/``
    escaped)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def data_attrs(key: str, value: object) -> str:
    """``data-key``/``data-value`` of a figure: where it is in the data, what is shown.

    ``key`` is a JSON Pointer, or for short a dotted path of plain names (``a.b.0``); a list
    followed by a name means that name of each of its items (``timeline.p99_ms``)."""
    if not key:
        return ""
    if not key.startswith("/"):
        key = pointer(*key.split("."))
    return f' data-key="{escape(key)}" data-value="{escape(json.dumps(value))}"'


def column(points: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    """``key`` of each point (None where absent): a series out of a list of records."""
    return [p.get(key) for p in points]


@dataclass(frozen=True)
class Series:
    """One line: ``ys[i]`` at ``xs[i]``; a None y is a gap. ``key`` names it in the JSON."""

    name: str
    xs: Sequence[Number]
    ys: Sequence[Number | None]
    key: str = ""
    color: str | None = None
    dashed: bool = False
    data: object = None  # what ``data-value`` says, when the JSON holds it otherwise (booleans)


@dataclass(frozen=True)
class Mark:
    """A reference line: ``axis`` "x" (vertical, at a time) or "y" (horizontal, at a value)."""

    axis: str
    at: float
    label: str
    key: str = ""
    color: str = "#6e7781"


@dataclass(frozen=True)
class Frame:
    """The plot area of a ``width`` x ``height`` chart and its scales."""

    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float
    log_x: bool = False
    left: int = 64
    right: int = 16
    top: int = 12
    bottom: int = 34
    extra: list[str] = field(default_factory=list)

    def x(self, v: float) -> float:
        if self.log_x:
            v, lo, hi = math.log10(max(v, 1e-12)), math.log10(self.x0), math.log10(self.x1)
        else:
            lo, hi = self.x0, self.x1
        span = (hi - lo) or 1.0
        return self.left + (v - lo) / span * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.height - self.bottom - (v - self.y0) / span * (
            self.height - self.top - self.bottom)


def _axes(f: Frame, xticks: Sequence[float], yticks: Sequence[float], xfmt: Format,
          yfmt: Format, x_label: str) -> list[str]:
    yfmt = _distinct(yfmt, yticks)
    out = [f'<rect x="{f.left}" y="{f.top}" width="{f.width - f.left - f.right}" '
           f'height="{f.height - f.top - f.bottom}" class="plot"/>']
    for t in yticks:
        y = _num(f.y(t))
        out.append(f'<line x1="{f.left}" x2="{f.width - f.right}" y1="{y}" y2="{y}" '
                   f'class="grid"/><text x="{f.left - 6}" y="{y}" class="ytick">'
                   f"{escape(yfmt(t))}</text>")
    for t in xticks:
        x = _num(f.x(t))
        out.append(f'<line x1="{x}" x2="{x}" y1="{f.height - f.bottom}" '
                   f'y2="{f.height - f.bottom + 4}" class="axis"/>'
                   f'<text x="{x}" y="{f.height - f.bottom + 16}" class="xtick">'
                   f"{escape(xfmt(t))}</text>")
    out.append(f'<text x="{f.width - f.right}" y="{f.height - 2}" class="xlabel">'
               f"{escape(x_label)}</text>")
    return out


def _marks(f: Frame, marks: Sequence[Mark]) -> list[str]:
    out = []
    for m in marks:
        if m.axis == "x":
            x = _num(f.x(m.at))
            # The label on the line's right, or on its left near the chart's right edge.
            side = ' dx="-3" text-anchor="end"' if f.x(m.at) > 0.75 * f.width else ' dx="3"'
            out.append(f'<g class="mark"{data_attrs(m.key, m.at)}><line x1="{x}" x2="{x}" '
                       f'y1="{f.top}" y2="{f.height - f.bottom}" stroke="{m.color}"/>'
                       f'<text x="{x}" y="{f.top + 10}"{side} fill="{m.color}">'
                       f"{escape(m.label)}</text></g>")
        else:
            y = _num(f.y(m.at))
            out.append(f'<g class="mark"{data_attrs(m.key, m.at)}><line x1="{f.left}" '
                       f'x2="{f.width - f.right}" y1="{y}" y2="{y}" stroke="{m.color}"/>'
                       f'<text x="{f.width - f.right}" y="{y}" dy="-3" text-anchor="end" '
                       f'fill="{m.color}">{escape(m.label)}</text></g>')
    return out


def _svg(f: Frame, title: str, body: list[str], legend: Sequence[tuple[str, str, bool]]) -> str:
    keys = "".join(
        f'<span class="key"><i style="border-color:{c}"{" class=dash" if d else ""}></i>'
        f"{escape(n)}</span>" for n, c, d in legend) if len(legend) > 1 else ""
    return (f'<figure class="chart"><figcaption>{escape(title)}{keys}</figcaption>'
            f'<svg viewBox="0 0 {f.width} {f.height}" width="{f.width}" height="{f.height}" '
            f'role="img" aria-label="{escape(title)}">{"".join(body)}</svg></figure>')


def line_chart(series: Sequence[Series], *, title: str, x_label: str = "seconds",
               yfmt: Format = plain, xfmt: Format = plain, marks: Sequence[Mark] = (),
               y_min: float | None = 0.0, width: int = 480, height: int = 220,
               steps: bool = False, yticks: Sequence[float] = ()) -> str:
    """Lines over a shared x axis (time, mostly); ``steps`` draws each value until the next;
    ``yticks`` fixes the y axis's ticks (else round ones cover the values)."""
    xs = [float(x) for s in series for x in s.xs]
    ys = [float(y) for s in series for y in s.ys if y is not None]
    ys += [m.at for m in marks if m.axis == "y"]
    xs += [m.at for m in marks if m.axis == "x"]
    if not xs or not ys:
        return (f'<figure class="chart empty"><figcaption>{escape(title)}</figcaption>'
                "<p>No data.</p></figure>")
    lo = min(ys) if y_min is None else min(y_min, min(ys))
    yt = list(yticks) or nice_ticks(lo, max(ys))
    xt = nice_ticks(min(xs), max(xs), 6)
    f = Frame(width, height, xt[0], xt[-1], yt[0], yt[-1])
    body = _axes(f, xt, yt, xfmt, yfmt, x_label)
    legend = []
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        legend.append((s.name, color, s.dashed))
        paths: list[list[str]] = []
        run: list[str] = []
        last_y: float | None = None
        for x, y in zip(s.xs, s.ys, strict=True):
            if y is None:
                if run:
                    paths.append(run)
                run, last_y = [], None
                continue
            if steps and last_y is not None:
                run.append(f"{_num(f.x(x))},{_num(f.y(last_y))}")
            run.append(f"{_num(f.x(x))},{_num(f.y(y))}")
            last_y = y
        if run:
            paths.append(run)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        lines = "".join(
            f'<polyline points="{" ".join(p)}" stroke="{color}"{dash}/>' if len(p) > 1 else
            f'<circle cx="{p[0].split(",")[0]}" cy="{p[0].split(",")[1]}" r="2.5" '
            f'fill="{color}"/>' for p in paths)
        shown = list(s.ys) if s.data is None else s.data
        body.append(f'<g class="series"{data_attrs(s.key, shown)}>'
                    f"<title>{escape(s.name)}</title>{lines}</g>")
    body += _marks(f, marks)
    return _svg(f, title, body, legend)


def bar_chart(xs: Sequence[Number], ys: Sequence[Number], *, title: str, key: str = "",
              x_label: str = "seconds", yfmt: Format = plain, xfmt: Format = plain,
              marks: Sequence[Mark] = (), color: str = PALETTE[0], width: int = 480,
              height: int = 200) -> str:
    """One bar per value, centred on its x (a batch, a second)."""
    if not xs:
        return (f'<figure class="chart empty"><figcaption>{escape(title)}</figcaption>'
                "<p>No data.</p></figure>")
    allx = [float(x) for x in xs] + [m.at for m in marks if m.axis == "x"]
    xt = nice_ticks(min(allx), max(allx), 6)
    yt = nice_ticks(0.0, max([float(y) for y in ys] + [m.at for m in marks if m.axis == "y"]))
    pad = (xt[-1] - xt[0]) / 40 or 0.5
    f = Frame(width, height, xt[0] - pad, xt[-1] + pad, yt[0], yt[-1])
    body = _axes(f, xt, yt, xfmt, yfmt, x_label)
    gaps = sorted(float(x) for x in xs)
    near = min((b - a for a, b in itertools.pairwise(gaps) if b > a), default=pad * 4)
    bar = max(1.0, min(24.0, 0.8 * (f.x(xt[0] + near) - f.x(xt[0]))))
    rects = "".join(
        f'<rect x="{_num(f.x(x) - bar / 2)}" y="{_num(f.y(y))}" width="{_num(bar)}" '
        f'height="{_num(f.y(0) - f.y(y))}" fill="{color}"><title>{escape(xfmt(x))}: '
        f"{escape(yfmt(y))}</title></rect>" for x, y in zip(xs, ys, strict=True))
    body.append(f'<g class="series"{data_attrs(key, list(ys))}>{rects}</g>')
    body += _marks(f, marks)
    return _svg(f, title, body, [])


def histogram(bins: Sequence[tuple[float, float, int]], *, title: str, key: str = "",
              x_label: str = "ms (log scale)", marks: Sequence[Mark] = (),
              color: str = PALETTE[0], width: int = 480, height: int = 220) -> str:
    """Counts of (low, high, count) bins on a logarithmic x axis."""
    bins = [b for b in bins if b[1] > 0]
    if not bins:
        return (f'<figure class="chart empty"><figcaption>{escape(title)}</figcaption>'
                "<p>No data.</p></figure>")
    lo = min(max(b[0], b[1] / 1.5) for b in bins)
    hi = max([b[1] for b in bins] + [m.at for m in marks if m.axis == "x"])
    lo_dec, hi_dec = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if hi_dec <= lo_dec:
        hi_dec = lo_dec + 1
    xt = [10.0 ** d for d in range(lo_dec, hi_dec + 1)]
    yt = nice_ticks(0.0, max(b[2] for b in bins))
    f = Frame(width, height, xt[0], xt[-1], yt[0], yt[-1], log_x=True)
    body = _axes(f, xt, yt, plain, plain, x_label)
    rects = "".join(
        f'<rect x="{_num(f.x(max(a, xt[0])))}" y="{_num(f.y(n))}" '
        f'width="{_num(max(0.8, f.x(b) - f.x(max(a, xt[0]))))}" '
        f'height="{_num(f.y(0) - f.y(n))}" fill="{color}"><title>{plain(a)}-{plain(b)} ms: '
        f"{n:,}</title></rect>" for a, b, n in bins)
    body.append(f'<g class="series"{data_attrs(key, [list(b) for b in bins])}>{rects}</g>')
    body += _marks(f, marks)
    return _svg(f, title, body, [])


@dataclass(frozen=True)
class Span:
    """A stretch of one lane: ``phase`` from ``start`` to ``end`` (seconds); ``key``/``value``
    name the JSON figure it starts at."""

    start: float
    end: float
    phase: str
    key: str = ""
    value: object = None


def lanes(rows: Sequence[tuple[str, Sequence[Span]]], *, title: str, colors: dict[str, str],
          x_label: str = "seconds", width: int = 900) -> str:
    """One horizontal lane per row (a node), its spans coloured by phase (a Gantt chart)."""
    ends = [s.end for _, spans in rows for s in spans] + [s.start for _, sp in rows for s in sp]
    if not ends:
        return (f'<figure class="chart empty"><figcaption>{escape(title)}</figcaption>'
                "<p>No data.</p></figure>")
    lane = 26
    height = 12 + 34 + lane * len(rows)
    xt = nice_ticks(0.0, max(ends), 8)
    left = min(260, 12 + 7 * max(len(label) for label, _ in rows))
    f = Frame(width, height, xt[0], xt[-1], 0.0, float(len(rows)), left=left)
    body = _axes(f, xt, [], plain, plain, x_label)
    for i, (label, spans) in enumerate(rows):
        y = f.top + i * lane
        body.append(f'<text x="{left - 6}" y="{y + lane / 2}" class="ytick">'
                    f"{escape(label)}</text>")
        for s in spans:
            x0, x1 = f.x(s.start), f.x(max(s.end, s.start))
            body.append(
                f'<rect x="{_num(x0)}" y="{y + 4}" width="{_num(max(2.0, x1 - x0))}" '
                f'height="{lane - 8}" fill="{colors.get(s.phase, PALETTE[7])}"'
                f'{data_attrs(s.key, s.value)}><title>{escape(label)}: {escape(s.phase)} '
                f"{plain(s.start)}-{plain(s.end)} s</title></rect>")
    used = {s.phase for _, spans in rows for s in spans}
    legend = [(phase, color, False) for phase, color in colors.items() if phase in used]
    return _svg(f, title, body, legend)
