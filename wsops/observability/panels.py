"""A dashboard panel as wsops specifies it (what it shows: title, unit, PromQL, description),
the PromQL helpers the panels share, and the grafanalib layout of sections of panels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafanalib import core as g

from wsops.observability.grafana_json import DATASOURCE
from wsops.observability.queries import EVENT_ONLY_MARKER

RI = "$__rate_interval"
_GRID_WIDTH = 24


@dataclass(frozen=True)
class Panel:
    """What a panel shows; layout and JSON come later."""

    kind: str  # timeseries | stat | heatmap
    title: str
    unit: str
    targets: tuple[tuple[str, str], ...]  # (legend, expr)
    description: str
    event: str = ""  # non-empty: the event this panel waits for
    w: int = 12
    h: int = 8
    thresholds: tuple[tuple[float, str], ...] = ()  # (from value, colour) above the green base
    mappings: tuple[dict[str, Any], ...] = ()
    text_mode: str = "auto"  # stat only


Section = tuple[str, Sequence[Panel]]


# -- PromQL helpers ----------------------------------------------------------------------------


def rate(metric: str, sel: str, by: str = "") -> str:
    grouping = f"sum by ({by}) " if by else "sum"
    return f"{grouping}(rate({metric}{sel}[{RI}]))"


def quantile(q: float, histogram: str, sel: str, by: str = "") -> str:
    labels = f"{by}, le" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({labels}) (rate({histogram}_bucket{sel}[{RI}])))"
    )


def buckets(histogram: str, sel: str) -> str:
    """Per-bucket rates for a heatmap panel (target format ``heatmap``)."""
    return f"sum by (le) (rate({histogram}_bucket{sel}[{RI}]))"


def ts(title: str, unit: str, *targets: tuple[str, str], desc: str, **kw: Any) -> Panel:
    return Panel("timeseries", title, unit, targets, desc, **kw)


def stat(title: str, unit: str, legend: str, expr: str, desc: str, **kw: Any) -> Panel:
    return Panel("stat", title, unit, ((legend, expr),), desc, w=kw.pop("w", 4), h=4, **kw)


def heatmap(title: str, unit: str, histogram: str, sel: str, desc: str) -> Panel:
    return Panel("heatmap", title, unit, (("{{le}}", buckets(histogram, sel)),), desc)


BOOL_MAP = ({"type": "value", "options": {
    "0": {"color": "green", "index": 0, "text": "no"},
    "1": {"color": "orange", "index": 1, "text": "yes"},
}},)  # fmt: skip
UP_MAP = ({"type": "value", "options": {
    "0": {"color": "red", "index": 0, "text": "down"},
    "1": {"color": "green", "index": 1, "text": "up"},
}},)  # fmt: skip


# -- layout with grafanalib --------------------------------------------------------------------


def _description(p: Panel) -> str:
    return f"{p.description} {EVENT_ONLY_MARKER} {p.event}" if p.event else p.description


def _grafanalib_panel(p: Panel, panel_id: int, pos: Any) -> Any:
    targets = [
        g.Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + i), datasource=DATASOURCE,
                 format="heatmap" if p.kind == "heatmap" else "time_series")
        for i, (legend, expr) in enumerate(p.targets)
    ]
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": colour, "value": value} for value, colour in p.thresholds]
    common: dict[str, Any] = {
        "title": p.title, "description": _description(p), "dataSource": DATASOURCE,
        "targets": targets, "id": panel_id, "gridPos": pos,
    }
    if p.kind == "stat":
        return g.Stat(format=p.unit, reduceCalc="lastNotNull", textMode=p.text_mode,
                      mappings=list(p.mappings), thresholds=steps, **common)
    if p.kind == "heatmap":
        return g.Heatmap(dataFormat="tsbuckets", yBucketBound="upper", hideZeroBuckets=True,
                         legend={"show": True}, yAxis=g.YAxis(format=p.unit), **common)
    return g.TimeSeries(unit=p.unit, fillOpacity=10, showPoints="never", tooltipMode="multi",
                        stacking={"group": "A", "mode": "none"}, thresholds=steps, **common)


def layout(sections: Sequence[Section]) -> list[Any]:
    """Rows and panels left to right, wrapping at the grid width; ids in reading order."""
    out: list[Any] = []
    y = 0
    for title, panels in sections:
        out.append(g.RowPanel(title=title, dataSource=DATASOURCE, id=len(out) + 1,
                              gridPos=g.GridPos(h=1, w=_GRID_WIDTH, x=0, y=y)))
        y += 1
        x = line_height = 0
        for p in panels:
            if x + p.w > _GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            out.append(_grafanalib_panel(p, len(out) + 1, g.GridPos(h=p.h, w=p.w, x=x, y=y)))
            x += p.w
            line_height = max(line_height, p.h)
        y += line_height
    return out
