"""What ``wsops leaks`` draws: suspect tables, WebSocket and app checks, RSS/traced sparklines,
and the diff of two saved samples. Rich renderables from analysed data; no I/O."""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from wsops.ops.leakcheck import Finding, Report, fmt
from wsops.ops.leakdiff import DiffRow

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """``values`` as block characters, min to max; longer series are averaged to ``width``."""
    if not values:
        return ""
    if len(values) > width:
        values = [sum(part) / len(part) for part in
                  (values[i * len(values) // width:(i + 1) * len(values) // width]
                   for i in range(width))]
    lo, hi = min(values), max(values)
    if hi <= lo:
        return BARS[0] * len(values)
    return "".join(BARS[min(len(BARS) - 1, int((v - lo) / (hi - lo) * len(BARS)))]
                   for v in values)


_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep


def short_path(file: str) -> str:
    """A path as people read it: inside site-packages, the standard library or the working
    directory when it is there."""
    marker = "site-packages" + os.sep
    if marker in file:
        return file.split(marker, 1)[1]
    for prefix in (_STDLIB, os.getcwd() + os.sep):
        if file.startswith(prefix):
            return file[len(prefix):]
    return file


def frames(tb: Sequence[tuple[str, int]], limit: int = 4) -> str:
    shown = [f"{short_path(f)}:{n}" for f, n in tb[:limit]]
    more = f"\n  (+{len(tb) - limit} more)" if len(tb) > limit else ""
    return "\n← ".join(shown) + more


def _verdict(f: Finding) -> Text:
    return Text("SUSPECT", style="bold red") if f.suspect else Text(f.reason or "", style="dim")


def _monotonic(f: Finding) -> str:
    return f"τ {f.trend.tau:.2f}, {f.trend.up_fraction:.0%} up"


def site_table(findings: Sequence[Finding]) -> Table:
    t = Table(title="Allocation sites by steady growth (tracemalloc)", title_justify="left")
    for col, just in (("#", "right"), ("site", "left"), ("growth/min", "right"),
                      ("monotonic", "right"), ("size now", "right"), ("blocks", "right"),
                      ("traceback (most recent first)", "left"), ("verdict", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for i, f in enumerate(findings, 1):
        site = f.site
        where = short_path(site.file) + f":{site.line}" if site else f.name
        t.add_row(str(i), where, fmt(f.trend.slope, "B"), _monotonic(f),
                  fmt(site.size if site else f.trend.last, "B"),
                  f"{site.count:,}" if site else "", frames(site.traceback) if site else "",
                  _verdict(f))
    return t


def type_table(findings: Sequence[Finding], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("name", "first → last", "growth/min", "monotonic", "verdict"):
        t.add_column(col)
    for f in findings:
        tr = f.trend
        t.add_row(f.name, f"{fmt(tr.first)} → {fmt(tr.last)}", f"{tr.slope:+,.1f}",
                  _monotonic(f), _verdict(f))
    return t


def ws_text(report: Report) -> Text:
    ws = report.websockets
    line = (f"WebSocket objects found by gc: {ws.objects_last} (closed: {ws.closed_last}); "
            f"open connections: {ws.open_last}; excess now {ws.excess_last}, "
            f"lowest {ws.excess_min}. ")
    if ws.suspect:
        return Text(line + "SUSPECT: closed connections are still referenced "
                    "(look for lists, dicts or sets of sockets that are never cleaned up).",
                    style="bold red")
    return Text(line + "OK", style="green")


def memory_lines(report: Report, rss: Sequence[float], traced: Sequence[float]) -> Group:
    m = report.memory
    rows = [
        Text(f"RSS    {sparkline(rss)}  {fmt(rss[-1] if rss else 0, 'B')} "
             f"({fmt(m.rss.slope, 'B')}/min, without tracemalloc's own memory)"),
        Text(f"traced {sparkline(traced)}  {fmt(traced[-1] if traced else 0, 'B')} "
             f"({fmt(m.traced.slope, 'B')}/min)"),
        Text(m.hint, style="yellow" if m.native else "dim"),
    ]
    return Group(*rows)


def render_report(report: Report, meta: dict[str, Any], rss: Sequence[float],
                  traced: Sequence[float], top: int) -> Group:
    parts: list[RenderableType] = [Text(
        f"{meta['node']}: {report.samples} samples over {report.seconds:.0f} s; "
        f"tracemalloc {meta.get('frames', '?')} frames ({meta['tracing']})", style="bold")]
    sites = report.sites[:top]
    if sites:
        parts.append(site_table(sites))
    else:
        parts.append(Text("No allocation site grew."))
    types = [f for f in report.types if f.suspect] or report.types[:5]
    if types:
        parts.append(type_table(types[:top], "Object types by steady growth (gc counts)"))
    parts.append(ws_text(report))
    if report.checks:
        parts.append(type_table(report.checks, "App leak checks (should stay flat)"))
    parts.append(memory_lines(report, rss, traced))
    for caveat in meta.get("caveats", []):
        parts.append(Text(f"note: {caveat}", style="dim"))
    n = report.suspects
    parts.append(Text(f"{n} suspect{'s' if n != 1 else ''} found (exit 3)" if n else
                      "No suspect: nothing grew steadily.",
                      style="bold red" if n else "bold green"))
    return Group(*parts)


def diff_table(rows: Sequence[DiffRow], by: str, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col, just in (("#", "right"), ("site" if by == "lineno" else "traceback", "left"),
                      ("size A", "right"), ("size B", "right"), ("growth", "right"),
                      ("blocks A → B", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for i, r in enumerate(rows, 1):
        name = frames(r.traceback, 1) if by == "lineno" else frames(r.traceback, 8)
        style = "red" if r.growth > 0 else None
        t.add_row(str(i), name, fmt(r.size_a, "B"), fmt(r.size_b, "B"),
                  Text(("+" if r.growth > 0 else "") + fmt(r.growth, "B"), style=style or ""),
                  f"{r.count_a:,} → {r.count_b:,}")
    return t
