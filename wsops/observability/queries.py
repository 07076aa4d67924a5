"""Panel queries of built dashboards, for tests and tools: list them, make them concrete."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

EVENT_ONLY_MARKER = "Event-only:"


@dataclass(frozen=True)
class PanelQuery:
    """One panel query as it stands in the dashboard JSON."""

    dashboard: str  # uid
    panel: str  # panel title
    expr: str  # PromQL with $job/$instance/$__rate_interval variables
    event_only: bool  # the panel has data only after an event (see EVENT_ONLY_MARKER)


def _iter_panels(panels: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _iter_panels(panel.get("panels", []))  # collapsed rows hold their panels


def panel_queries(dashboards: dict[str, dict[str, Any]]) -> list[PanelQuery]:
    """Every target expression of every panel, with whether the panel is event-only."""
    return [
        PanelQuery(dash["uid"], panel["title"], target["expr"],
                   EVENT_ONLY_MARKER in panel.get("description", ""))
        for dash in dashboards.values()
        for panel in _iter_panels(dash["panels"])
        for target in panel.get("targets", [])
    ]


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def concrete(expr: str, job: str = ".+", instance: str = ".+", cluster: str = ".*") -> str:
    """expr with Grafana variables replaced so Prometheus can evaluate it: $job/$instance/$cluster
    (regex matchers), $__rate_interval and $__interval -> "1m", $__range -> "5m"."""
    values = {"job": job, "instance": instance, "cluster": cluster, "__rate_interval": "1m",
              "__interval": "1m", "__range": "5m"}

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise ValueError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(value, expr)
