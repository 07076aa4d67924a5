"""The wsops Grafana dashboards: fleet overview, node detail, memory and leaks.

Panels are specified once (title, unit, PromQL, description), built with grafanalib and
reshaped by :mod:`wsops.observability.grafana_json` into the JSON Grafana 10/11 imports. Every
query selects through template variables (``$datasource``, ``$job``, ``$instance``), so the same
files serve any Prometheus; :func:`concrete` turns a panel query into one Prometheus can
evaluate, for the end-to-end test that runs every panel against a real server.

Some panels only have data after an event (a connection closed, an upgrade refused, a leak
profile running). Their description carries the marker ``EVENT_ONLY_MARKER`` followed by the
event, so a Grafana user reads why the panel is empty, and :func:`panel_queries` reports
``event_only`` from that same text: the JSON is the single source of truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafanalib import core as g

from wsops.observability.grafana_json import DATASOURCE, modernize_dashboard, to_plain
from wsops.observability.queries import EVENT_ONLY_MARKER, PanelQuery, concrete, panel_queries

DASHBOARD_UIDS = {"fleet": "wsops-fleet", "node": "wsops-node", "memory": "wsops-memory"}
"""Starts the sentence of a panel description that names the event the panel waits for."""

RI = "$__rate_interval"
_GRID_WIDTH = 24
_LINKS = [{
    "asDropdown": False, "icon": "external link", "includeVars": True, "keepTime": True,
    "tags": ["wsops"], "targetBlank": False, "title": "wsops", "type": "dashboards",
}]  # fmt: skip


@dataclass(frozen=True)
class _Panel:
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


Section = tuple[str, Sequence[_Panel]]


# -- PromQL helpers ----------------------------------------------------------------------------


def _rate(metric: str, sel: str, by: str = "") -> str:
    grouping = f"sum by ({by}) " if by else "sum"
    return f"{grouping}(rate({metric}{sel}[{RI}]))"


def _quantile(q: float, histogram: str, sel: str, by: str = "") -> str:
    labels = f"{by}, le" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({labels}) (rate({histogram}_bucket{sel}[{RI}])))"
    )


def _buckets(histogram: str, sel: str) -> str:
    """Per-bucket rates for a heatmap panel (target format ``heatmap``)."""
    return f"sum by (le) (rate({histogram}_bucket{sel}[{RI}]))"


def _ts(title: str, unit: str, *targets: tuple[str, str], desc: str, **kw: Any) -> _Panel:
    return _Panel("timeseries", title, unit, targets, desc, **kw)


def _stat(title: str, unit: str, legend: str, expr: str, desc: str, **kw: Any) -> _Panel:
    return _Panel("stat", title, unit, ((legend, expr),), desc, w=kw.pop("w", 4), h=4, **kw)


def _heatmap(title: str, unit: str, histogram: str, sel: str, desc: str) -> _Panel:
    return _Panel("heatmap", title, unit, (("{{le}}", _buckets(histogram, sel)),), desc)


_BOOL_MAP = ({"type": "value", "options": {
    "0": {"color": "green", "index": 0, "text": "no"},
    "1": {"color": "orange", "index": 1, "text": "yes"},
}},)  # fmt: skip
_UP_MAP = ({"type": "value", "options": {
    "0": {"color": "red", "index": 0, "text": "down"},
    "1": {"color": "green", "index": 1, "text": "up"},
}},)  # fmt: skip

# -- panels shared by several dashboards ------------------------------------------------------


def _churn(sel: str) -> _Panel:
    return _ts(
        "Connects and disconnects /s", "ops",
        ("connects", _rate("wsops_connections_opened_total", sel)),
        # Every ended connection is observed once in the duration histogram, whose series
        # exist from the first connection on: 0 instead of "no data" on a quiet node.
        ("disconnects", _rate("wsops_connection_duration_seconds_count", sel)),
        desc="WebSocket upgrades accepted and connections ended, per second.",
    )


def _close_codes(sel: str) -> _Panel:
    return _ts(
        "Close codes /s", "ops", ("{{code}}", _rate("wsops_connections_closed_total", sel, "code")),
        desc="Ended connections by final close code: 1000 normal, 1001 going away, 1006 lost "
        "or heartbeat timeout, 1012 drain, 1013 overload, 4000 slow consumer.",
        event="no series until a connection has closed on the selected nodes.",
    )


def _handshake_failures(sel: str) -> _Panel:
    return _ts(
        "Handshake failures by reason /s", "ops",
        ("{{reason}}", _rate("wsops_handshake_failures_total", sel, "reason")),
        desc="Upgrade requests refused (auth, origin, limits, draining), by reason.",
        event="no series until an upgrade request has been refused.",
    )


def _gc(sel: str, by: str) -> list[_Panel]:
    legend = "{{instance}} gen {{generation}}" if "instance" in by else "gen {{generation}}"
    return [
        _ts("GC collections /s", "ops",
            (legend, _rate("wsops_gc_collections_total", sel, by)),
            desc="Garbage collections per second by generation.", w=12),
        _ts("GC pause share", "percentunit",
            (legend, _rate("wsops_gc_pause_seconds_total", sel, by)),
            desc="Share of wall time spent in garbage collection, by generation.", w=12),
        _ts("GC pause p99", "s",
            (legend, _quantile(0.99, "wsops_gc_pause_duration_seconds", sel, by)),
            desc="99th percentile of single collections' pauses, by generation: each pause "
                 "adds that much latency to every connection at once.", w=12),
        _ts("Frozen objects", "short",
            ("{{instance}}", f"wsops_gc_frozen_objects{sel}") if "instance" in by
            else ("frozen", f"sum(wsops_gc_frozen_objects{sel})"),
            desc="Objects kept out of collections (long-lived connection state, frozen by "
                 "wsops serve). Grows and falls with connections; a rise with flat "
                 "connections is state that outlives its connection.", w=12),
    ]


# -- the dashboards ---------------------------------------------------------------------------


def _fleet(sel: str) -> list[Section]:
    p99 = _quantile(0.99, "wsops_delivery_latency_seconds", sel)
    return [
        ("Overview", [
            _stat("Nodes up", "short", "up", f"sum(up{sel})", "Nodes Prometheus scrapes."),
            _stat("Connections", "short", "open", f"sum(wsops_connections_open{sel})",
                  "WebSocket connections open now, all selected nodes."),
            _stat("Capacity used", "percentunit", "used",
                  f"sum(wsops_connections_open{sel}) / sum(wsops_connections_max{sel})",
                  "Open connections over the nodes' --max-connections (bundled server).",
                  thresholds=((0.8, "orange"), (0.9, "red"))),
            _stat("Messages /s", "ops", "messages", _rate("wsops_messages_total", sel),
                  "Data messages received and sent per second."),
            _stat("Delivery p99", "s", "p99", p99,
                  "99th percentile of publish-to-socket delivery latency (bundled server)."),
            _stat("Draining nodes", "short", "draining", f"sum(wsops_draining{sel})",
                  "Nodes draining now (SIGTERM or wsops drain).", thresholds=((1, "orange"),)),
        ]),
        ("Connections", [
            _ts("Connections by instance", "short",
                ("{{instance}}", f"sum by (instance) (wsops_connections_open{sel})"),
                desc="Open connections per node: a lopsided fleet shows here."),
            _churn(sel),
            _close_codes(sel),
            _handshake_failures(sel),
        ]),
        ("Messages", [
            _ts("Messages /s", "ops",
                ("{{direction}}", _rate("wsops_messages_total", sel, "direction")),
                desc="Data messages per second, in (from clients) and out (to clients)."),
            _ts("Message bytes /s", "Bps",
                ("{{direction}}", _rate("wsops_message_bytes_total", sel, "direction")),
                desc="Payload bytes per second, in and out."),
            _ts("Delivery latency", "s",
                *((f"p{round(q * 100)}", _quantile(q, "wsops_delivery_latency_seconds", sel))
                  for q in (0.5, 0.95, 0.99)),
                desc="Publish accepted to frame written, fleet-wide quantiles (bundled server).",
                w=24),
        ]),
        ("Errors and pressure", [
            _ts("Broker errors /s", "ops",
                ("{{instance}}", _rate("wsops_broker_errors_total", sel, "instance")),
                desc="Broker operations that failed, per node."),
            _ts("Slow consumers and rate limiting /s", "ops",
                ("slow consumer disconnects",
                 _rate("wsops_slow_consumer_disconnects_total", sel)),
                ("rate-limited messages", _rate("wsops_rate_limited_messages_total", sel)),
                desc="Connections closed for a full send queue (4000), messages refused by "
                "the per-connection rate limit."),
        ]),
    ]


def _node(sel: str) -> list[Section]:
    return [
        ("Node", [
            _stat("Build", "none", "{{version}} / Python {{python}}", f"wsops_build_info{sel}",
                  "wsops and Python versions of the node.", text_mode="name", w=6),
            _stat("Connections", "short", "open", f"sum(wsops_connections_open{sel})",
                  "WebSocket connections open now."),
            _stat("Capacity used", "percentunit", "used",
                  f"sum(wsops_connections_open{sel}) / sum(wsops_connections_max{sel})",
                  "Open connections over --max-connections (bundled server).",
                  thresholds=((0.8, "orange"), (0.9, "red"))),
            _stat("Draining", "none", "draining", f"max(wsops_draining{sel})",
                  "Whether the node drains now.", mappings=_BOOL_MAP,
                  thresholds=((1, "orange"),), w=5),
            _stat("Broker", "none", "broker", f"min(wsops_broker_up{sel})",
                  "Whether the broker is reachable (bundled server).", mappings=_UP_MAP,
                  thresholds=((1, "green"),), w=5),
        ]),
        ("Connections and messages", [
            _ts("Connections by route", "short",
                ("{{route}}", f"sum by (route) (wsops_connections_open{sel})"),
                desc="Open connections per route."),
            _churn(sel),
            _close_codes(sel),
            _handshake_failures(sel),
            _ts("Messages /s by type", "ops",
                ("{{direction}} {{type}}", _rate("wsops_messages_total", sel, "direction, type")),
                desc="Data messages per second by direction and frame type."),
            _ts("Message size p99", "bytes",
                ("{{direction}}", _quantile(0.99, "wsops_message_size_bytes", sel, "direction")),
                desc="99th percentile of message payload size, in and out."),
        ]),
        ("Latency", [
            _heatmap("Delivery latency", "s", "wsops_delivery_latency_seconds", sel,
                     "Distribution of publish-to-socket delivery latency (bundled server)."),
            _ts("Handler latency p99", "s",
                ("{{route}}", _quantile(0.99, "wsops_handler_latency_seconds", sel, "route")),
                desc="Received to the handler asking for the next message, p99 by route."),
            _heatmap("Event-loop lag", "s", "wsops_event_loop_lag_seconds", sel,
                     "How late the lag sampler's sleeps wake up: the loop was busy that long."),
            _ts("Event-loop lag p99", "s",
                ("p99", _quantile(0.99, "wsops_event_loop_lag_seconds", sel)),
                desc="99th percentile of event-loop lag."),
            _ts("Ping RTT p99", "s",
                ("{{route}}", _quantile(0.99, "wsops_ping_rtt_seconds", sel, "route")),
                desc="Heartbeat ping to the peer's next bytes, p99 by route."),
            _ts("Broker publish latency p99", "s",
                ("p99", _quantile(0.99, "wsops_broker_publish_latency_seconds", sel)),
                desc="Time the broker took to accept a publish, p99 (bundled server)."),
        ]),
        ("Process", [
            _ts("Resident memory", "bytes",
                ("rss", f"sum(wsops_process_resident_memory_bytes{sel})"),
                desc="Resident set size of the process."),
            _ts("Memory per connection", "bytes",
                ("per connection", f"sum(wsops_memory_per_connection_bytes{sel})"),
                desc="RSS divided by live connections (0 with none)."),
            _ts("CPU", "percentunit",
                ("cpu", _rate("wsops_process_cpu_seconds_total", sel)),
                desc="CPU time per second (1 = one core busy)."),
            _ts("File descriptors", "short",
                ("open", f"sum(wsops_process_open_fds{sel})"),
                ("max", f"sum(wsops_process_max_fds{sel})"),
                desc="Open file descriptors against the soft RLIMIT_NOFILE."),
            *_gc(sel, "generation"),
        ]),
        ("Pressure and broker", [
            _ts("Send queues", "bytes",
                ("all connections", f"sum(wsops_send_queue_bytes{sel})"),
                ("fullest connection", f"max(wsops_send_queue_max_bytes{sel})"),
                desc="Bytes waiting to be sent: total and on the fullest connection."),
            _ts("Slow consumers and rate limiting /s", "ops",
                ("slow consumer disconnects",
                 _rate("wsops_slow_consumer_disconnects_total", sel)),
                ("rate-limited messages", _rate("wsops_rate_limited_messages_total", sel)),
                desc="Connections closed for a full send queue (4000), messages refused by "
                "the rate limit."),
            _ts("Broker errors /s", "ops", ("errors", _rate("wsops_broker_errors_total", sel)),
                desc="Broker operations that failed."),
        ]),
    ]


def _memory(sel: str) -> list[Section]:
    return [
        ("Memory", [
            _ts("Resident memory", "bytes",
                ("{{instance}}", f"wsops_process_resident_memory_bytes{sel}"),
                desc="Resident set size per node."),
            _ts("Memory per connection", "bytes",
                ("{{instance}}", f"wsops_memory_per_connection_bytes{sel}"),
                desc="RSS divided by live connections per node (0 with none); the process "
                "baseline dominates at low connection counts."),
            _ts("RSS growth", "Bps",
                ("{{instance}}", f"deriv(wsops_process_resident_memory_bytes{sel}[1h])"),
                desc="Linear trend of RSS over the last hour: steady growth at a steady load "
                "is a leak."),
            _ts("Memory per connection growth", "Bps",
                ("{{instance}}", f"deriv(wsops_memory_per_connection_bytes{sel}[1h])"),
                desc="Trend of memory per connection over the last hour."),
            _ts("Connections", "short",
                ("{{instance}}", f"sum by (instance) (wsops_connections_open{sel})"),
                desc="Open connections per node, to read the memory trends against."),
            _ts("Traced memory (tracemalloc)", "bytes",
                ("{{instance}} traced", f"wsops_tracemalloc_traced_bytes{sel}"),
                ("{{instance}} peak", f"wsops_tracemalloc_peak_bytes{sel}"),
                desc="Memory tracemalloc traces on a node being profiled.",
                event="only while `wsops leaks` profiles a node (tracemalloc is off otherwise)."),
        ]),
        ("Runtime", [
            *_gc(sel, "instance, generation"),
            _ts("Open file descriptors", "short",
                ("{{instance}}", f"wsops_process_open_fds{sel}"),
                desc="Open file descriptors per node: growth at a steady load is a leak."),
        ]),
    ]


# -- grafanalib -------------------------------------------------------------------------------


def _description(p: _Panel) -> str:
    return f"{p.description} {EVENT_ONLY_MARKER} {p.event}" if p.event else p.description


def _grafanalib_panel(p: _Panel, panel_id: int, pos: Any) -> Any:
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


def _layout(sections: Sequence[Section]) -> list[Any]:
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


def _variables(job_selector: str, *, instance_multi: bool) -> Any:
    return g.Templating(list=[
        g.Template(name="datasource", label="Data source", query="prometheus",
                   type="datasource"),
        g.Template(name="job", label="Job", query="label_values(wsops_build_info, job)",
                   dataSource=DATASOURCE, multi=True, includeAll=True,
                   refresh=g.REFRESH_ON_TIME_RANGE_CHANGE),
        g.Template(name="instance", label="Instance",
                   query=f"label_values(wsops_build_info{{{job_selector}}}, instance)",
                   dataSource=DATASOURCE, multi=instance_multi, includeAll=instance_multi,
                   refresh=g.REFRESH_ON_TIME_RANGE_CHANGE),
    ])  # fmt: skip


def build_dashboards(job_selector: str = 'job=~"$job"') -> dict[str, dict[str, Any]]:
    """filename (e.g. "wsops-fleet.json") -> dashboard JSON (a dict ready for json.dumps)."""
    sel = f'{{{job_selector}, instance=~"$instance"}}'
    specs = (
        ("fleet", "wsops / Fleet overview", _fleet(sel), True, "now-3h", "30s"),
        ("node", "wsops / Node detail", _node(sel), False, "now-1h", "30s"),
        ("memory", "wsops / Memory and leaks", _memory(sel), True, "now-24h", "1m"),
    )
    out: dict[str, dict[str, Any]] = {}
    for key, title, sections, multi, since, refresh in specs:
        uid = DASHBOARD_UIDS[key]
        dash = g.Dashboard(
            title=title, uid=uid, tags=["wsops"], editable=True, refresh=refresh,
            time=g.Time(since, "now"), timezone="browser", version=1, links=_LINKS,
            graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR, panels=_layout(sections),
            templating=_variables(job_selector, instance_multi=multi),
            description=(f"{title} (generated by wsops; edit "
                         "wsops/observability/grafana_dashboards.py)."),
        )
        out[f"{uid}.json"] = modernize_dashboard(to_plain(dash))
    return out


__all__ = ["DASHBOARD_UIDS", "EVENT_ONLY_MARKER", "PanelQuery", "build_dashboards", "concrete",
           "panel_queries"]
