"""The HTML report of ``wsops leaks`` (pure): ``render(data)`` with ``data`` its ``--json``.

Per profiled heap (the node, or each worker of a ``--workers`` node): the verdict, RSS and
traced memory over time, the top growing allocation sites as small multiples with their slope
and a suspect marker, object-type counts, WebSocket objects against open connections, the
app's leak checks, the caveats; then the command that produced it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wsops.ops.leakview import short_path
from wsops.ops.reports import charts, page
from wsops.ops.reports.charts import Series
from wsops.ops.reports.page import Cell

SMALL_MULTIPLES = 12


def _site_name(f: Mapping[str, Any]) -> str:
    if "file" in f:
        return f"{short_path(str(f['file']))}:{f['line']}"
    return str(f["name"])


def _verdict(f: Mapping[str, Any], key: str) -> Cell:
    if f["suspect"]:
        return Cell("SUSPECT", f"{key}.suspect", True, cls="bad")
    return Cell(str(f.get("reason") or ""), f"{key}.reason", f.get("reason"), cls="note")


def _small(f: Mapping[str, Any], key: str, unit: charts.Format) -> str:
    s = f.get("series") or {}
    ts, ys = s.get("t") or [], s.get("y") or []
    mark = "SUSPECT · " if f["suspect"] else ""
    title = f"{mark}{_site_name(f)} · {unit(float(f['slope']))}/min"
    chart = charts.line_chart(
        [Series(_site_name(f), ts, ys, f"{key}.series.y",
                color=charts.PALETTE[1] if f["suspect"] else charts.PALETTE[0])],
        title=title, yfmt=unit, width=300, height=150, y_min=None)
    return chart.replace('<figure class="chart">', '<figure class="chart small">', 1)


def _sites(d: Mapping[str, Any], prefix: str) -> list[str]:
    sites: Sequence[Mapping[str, Any]] = d.get("sites") or []
    if not sites:
        return [page.section("Allocation sites", page.note(
            "No allocation site grew steadily enough to rank."), id_=f"{prefix}sites")]
    rows = []
    for i, f in enumerate(sites):
        k = f"{prefix}sites.{i}"
        rows.append((
            str(i + 1), _site_name(f),
            Cell(charts.size(float(f["slope"])) + "/min", f"{k}.slope", f["slope"], True),
            Cell(f"{float(f['tau']):.2f}", f"{k}.tau", f["tau"], True),
            Cell(charts.size(float(f.get("size", f["last"]))), f"{k}.size",
                 f.get("size", f["last"]), True),
            Cell(f"{int(f.get('count', 0)):,}", f"{k}.count", f.get("count", 0), True),
            _verdict(f, k)))
    multiples = [_small(f, f"{prefix}sites.{i}", charts.size)
                 for i, f in enumerate(sites[:SMALL_MULTIPLES])]
    return [page.section(
        "Top growing allocation sites (tracemalloc)",
        page.note("Suspects first, by growth rate; each chart is one site's traced size at "
                  "each sample."),
        page.charts(*multiples),
        page.table(["#", "site", "growth/min", "monotonic (τ)", "size now", "blocks",
                    "verdict"], rows), id_=f"{prefix}sites")]


def _trend_table(rows_in: Sequence[Mapping[str, Any]], key: str) -> str:
    rows = []
    for i, f in enumerate(rows_in):
        k = f"{key}.{i}"
        rows.append((
            str(f["name"]),
            Cell(charts.plain(float(f["first"])), f"{k}.first", f["first"], True),
            Cell(charts.plain(float(f["last"])), f"{k}.last", f["last"], True),
            Cell(f"{float(f['slope']):+,.1f}", f"{k}.slope", f["slope"], True),
            Cell(f"{float(f['tau']):.2f}", f"{k}.tau", f["tau"], True),
            _verdict(f, k)))
    return page.table(["name", "first", "last", "growth/min", "monotonic (τ)", "verdict"], rows)


def _heap(d: Mapping[str, Any], prefix: str, heading: str) -> list[str]:
    """The sections of one profiled heap; ``prefix`` is its JSON path ("" or "workers.N.")."""
    samples = int(d.get("samples") or 0)
    error = [page.note(f"error: {d['error']} (the analysis covers the samples taken before)",
                       "bad")] if d.get("error") else []
    if samples < 2 or "timeline" not in d:
        return [page.section(heading, *error, page.note(
            f"{samples} sample{'s' if samples != 1 else ''}: fewer than 2, nothing to compare",
            "warn"), id_=f"{prefix}summary")]
    suspects = int(d.get("suspects") or 0)
    mem, tl, ws = d["memory"], d["timeline"], d["websockets"]
    out = [page.section(
        heading,
        page.figures(
            page.figure("suspects", str(suspects), f"{prefix}suspects", suspects,
                        "bad" if suspects else "good"),
            page.figure("samples", str(samples), f"{prefix}samples", samples),
            page.figure("seconds sampled", f"{float(d['seconds']):.0f}", f"{prefix}seconds",
                        d["seconds"]),
            page.figure("RSS growth per minute", charts.size(float(mem["rss"]["slope"])),
                        f"{prefix}memory.rss.slope", mem["rss"]["slope"]),
            page.figure("traced growth per minute", charts.size(float(mem["traced"]["slope"])),
                        f"{prefix}memory.traced.slope", mem["traced"]["slope"]),
            page.figure("WebSocket objects over open connections", str(ws["excess_last"]),
                        f"{prefix}websockets.excess_last", ws["excess_last"],
                        "bad" if ws["suspect"] else "")),
        *error,
        page.note(str(mem["hint"]), "warn" if mem.get("native") else "note"),
        *[page.note(f"note: {c}", "warn") for c in d.get("caveats") or ()],
        page.note(f"tracemalloc: {d.get('tracing')}, {d.get('frames')} frames", "note"),
        id_=f"{prefix}summary")]
    ts = tl["t"]
    out.append(page.section("Memory over time", page.charts(
        charts.line_chart([
            Series("RSS (without tracemalloc's own)", ts, tl["rss"], f"{prefix}timeline.rss"),
            Series("traced by tracemalloc", ts, tl["traced"], f"{prefix}timeline.traced")],
            title="RSS and traced memory", yfmt=charts.size, y_min=None),
        charts.line_chart([Series("WebSocket objects over open connections", ts,
                                  tl.get("ws_excess") or [], f"{prefix}timeline.ws_excess")],
                          title="WebSocket objects found by gc, minus open connections")),
        id_=f"{prefix}memory"))
    out += _sites(d, prefix)
    types = d.get("types") or []
    out.append(page.section(
        "Object types (gc counts)",
        _trend_table(types, f"{prefix}types") if types else page.note("No type grew."),
        id_=f"{prefix}types"))
    checks = d.get("checks") or []
    if checks:
        out.append(page.section("The app's leak checks (should stay flat)",
                                _trend_table(checks, f"{prefix}checks"), id_=f"{prefix}checks"))
    return out


def render(data: Mapping[str, Any]) -> str:
    """The page of one ``wsops leaks --json`` output (a node, or a ``--workers`` node)."""
    node = str(data.get("node", "?"))
    sections: list[str] = []
    if "workers" in data:
        for note in data.get("skipped") or ():
            sections.append(page.section("Skipped", page.note(str(note), "bad")))
        for i, w in enumerate(data["workers"]):
            sections += _heap(w, f"workers.{i}.", f"Worker {w.get('worker')}")
    else:
        sections += _heap(data, "", "Verdict")
    sections.append(page.command_section(data.get("command"), data.get("versions")))
    code = data.get("exit_code")
    verdict = {0: "no suspect", 3: "suspects found", 1: "error"}.get(
        int(code) if code is not None else -1, "")
    return page.document(f"wsops leaks · {node}", f"Memory leak profile: {verdict}",
                         sections, data)
