"""The wsops Grafana dashboards: fleet overview, node detail, memory and leaks.

Panels are specified once (title, unit, PromQL, description), built with grafanalib and
reshaped by :mod:`wsops.observability.grafana_json` into the JSON Grafana 10/11 imports. Every
query selects through template variables (``$datasource``, ``$job``, ``$instance``, and
``$cluster`` when built with a cluster label), so the same files serve any Prometheus;
:func:`concrete` turns a panel query into one Prometheus can evaluate, for the end-to-end test
that runs every panel against a real server.

Some panels only have data after an event (a connection closed, an upgrade refused, a leak
profile running). Their description carries the marker ``EVENT_ONLY_MARKER`` followed by the
event, so a Grafana user reads why the panel is empty, and :func:`panel_queries` reports
``event_only`` from that same text: the JSON is the single source of truth.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from grafanalib import core as g

from wsops.observability.grafana_json import (
    DATASOURCE,
    importable,
    modernize_dashboard,
    to_plain,
)
from wsops.observability.panels import (
    BOOL_MAP,
    RI,
    UP_MAP,
    Panel,
    Section,
    heatmap,
    layout,
    quantile,
    rate,
    stat,
    ts,
)
from wsops.observability.queries import EVENT_ONLY_MARKER, PanelQuery, concrete, panel_queries

DASHBOARD_UIDS = {"fleet": "wsops-fleet", "node": "wsops-node", "memory": "wsops-memory"}
_LINKS = [{
    "asDropdown": False, "icon": "external link", "includeVars": True, "keepTime": True,
    "tags": ["wsops"], "targetBlank": False, "title": "wsops", "type": "dashboards",
}]  # fmt: skip


# -- panels shared by several dashboards ------------------------------------------------------

def _churn(sel: str) -> Panel:
    return ts(
        "Connects and disconnects /s", "ops",
        ("connects", rate("wsops_connections_opened_total", sel)),
        # Every ended connection is observed once in the duration histogram, whose series
        # exist from the first connection on: 0 instead of "no data" on a quiet node.
        ("disconnects", rate("wsops_connection_duration_seconds_count", sel)),
        desc="WebSocket upgrades accepted and connections ended, per second.",
    )


def _close_codes(sel: str) -> Panel:
    return ts(
        "Close codes /s", "ops", ("{{code}}", rate("wsops_connections_closed_total", sel, "code")),
        desc="Ended connections by final close code: 1000 normal, 1001 going away, 1006 lost "
        "or heartbeat timeout, 1012 drain, 1013 overload, 4000 slow consumer.",
        event="no series until a connection has closed on the selected nodes.",
    )


def _handshake_failures(sel: str) -> Panel:
    return ts(
        "Handshake failures by reason /s", "ops",
        ("{{reason}}", rate("wsops_handshake_failures_total", sel, "reason")),
        desc="Upgrade requests refused (auth, origin, limits, draining), by reason.",
        event="no series until an upgrade request has been refused.",
    )


def _audience(sel: str) -> Panel:
    return ts(
        "Rooms, subscriptions and users", "short",
        ("rooms", f"sum(wsops_rooms{sel})"),
        ("subscriptions", f"sum(wsops_subscriptions{sel})"),
        ("users", f"sum(wsops_users{sel})"),
        desc="Rooms with a subscriber, room subscriptions and distinct users, as each process "
        "counts them, summed (bundled server): a room or user present on two nodes or workers "
        "counts twice.",
    )


def _resumes(sel: str) -> Panel:
    return ts(
        "Resumes /s", "ops",
        ("recovered={{recovered}}", rate("wsops_resumes_total", sel, "recovered")),
        desc="Subscribes that resumed from an offset, by whether every missed message was still "
        "in history (recovered=false: the client was told of a gap and must reload). "
        "WsopsResumeFailures fires on a high false share.",
    )


def _op_errors(sel: str) -> Panel:
    return ts(
        "Operation errors /s", "ops",
        ("{{op}} {{code}}", rate("wsops_operation_errors_total", sel, "op, code")),
        desc="Client requests answered with an error, by op (invalid: frames that did not parse) "
        "and error code (bad_request, forbidden, too_many_rooms, not_subscribed, unavailable, "
        "internal, ...; PROTOCOL.md). unavailable means the broker is down.",
        event="no series until a request has been answered with an error.",
    )


def _op_latency(sel: str) -> Panel:
    return ts(
        "Operation latency p99", "s",
        ("{{op}}", quantile(0.99, "wsops_operation_duration_seconds", sel, "op")),
        desc="Frame read to reply queued, p99 by op (a subscribe's history replay included; "
        "bundled server).",
    )


def _gc(sel: str, by: str) -> list[Panel]:
    legend = "{{instance}} gen {{generation}}" if "instance" in by else "gen {{generation}}"
    return [
        ts("GC collections /s", "ops",
            (legend, rate("wsops_gc_collections_total", sel, by)),
            desc="Garbage collections per second by generation.", w=12),
        ts("GC pause share", "percentunit",
            (legend, rate("wsops_gc_pause_seconds_total", sel, by)),
            desc="Share of wall time spent in garbage collection, by generation.", w=12),
        ts("GC pause p99", "s",
            (legend, quantile(0.99, "wsops_gc_pause_duration_seconds", sel, by)),
            desc="99th percentile of single collections' pauses, by generation: each pause "
                 "adds that much latency to every connection at once.", w=12),
        ts("Frozen objects", "short",
            ("{{instance}}", f"wsops_gc_frozen_objects{sel}") if "instance" in by
            else ("frozen", f"sum(wsops_gc_frozen_objects{sel})"),
            desc="Objects kept out of collections (long-lived connection state, frozen by "
                 "wsops serve). Grows and falls with connections; a rise with flat "
                 "connections is state that outlives its connection.", w=12),
    ]


# -- the dashboards ---------------------------------------------------------------------------


def _capacity(sel: str) -> list[Panel]:
    """Headroom now and after losing the largest node (WsopsFleetCannotLoseANode)."""
    open_ = f"sum(wsops_connections_open{sel})"
    limit = f"sum(wsops_connections_max{sel})"
    largest_limit = f"max(sum by (instance) (wsops_connections_max{sel}))"
    cores = f"count(process_cpu_seconds_total{sel})"
    largest_cores = f"max(count by (instance) (process_cpu_seconds_total{sel}))"
    busy = f"sum(rate(process_cpu_seconds_total{sel}[{RI}]))"
    return [
        ts("Connection headroom", "short",
           ("fleet", f"{limit} - {open_}"),
           ("after losing the largest node", f"{limit} - {largest_limit} - {open_}"),
           ("per node: {{instance}}", f"sum by (instance) (wsops_connections_max{sel}) - "
                                      f"sum by (instance) (wsops_connections_open{sel})"),
           desc="Connections the nodes could still take under their --max-connections. Below "
                "zero after losing the largest node, its clients would be refused when it goes "
                "(WsopsFleetCannotLoseANode). wsops plan sizes a fleet from measured costs.",
           thresholds=((-1e-9, "red"),)),
        ts("CPU headroom", "short",
           ("fleet", f"{cores} - {busy}"),
           ("after losing the largest node", f"{cores} - {largest_cores} - {busy}"),
           ("per node: {{instance}}", f"count by (instance) (process_cpu_seconds_total{sel}) - "
                                      f"sum by (instance) (rate(process_cpu_seconds_total{sel}"
                                      f"[{RI}]))"),
           desc="Idle cores: one per process (each worker is one event loop on one core) less "
                "the CPU they use. Below 10% of the survivors' cores after losing the largest "
                "node, the fleet could not carry its load (WsopsFleetCannotLoseANode).",
           thresholds=((-1e-9, "red"),)),
    ]


def _fleet(sel: str) -> list[Section]:
    p99 = quantile(0.99, "wsops_delivery_latency_seconds", sel)
    return [
        ("Overview", [
            stat("Nodes up", "short", "up", f"sum(up{sel})", "Nodes Prometheus scrapes."),
            stat("Connections", "short", "open", f"sum(wsops_connections_open{sel})",
                  "WebSocket connections open now, all selected nodes."),
            stat("Capacity used", "percentunit", "used",
                  f"sum(wsops_connections_open{sel}) / sum(wsops_connections_max{sel})",
                  "Open connections over the nodes' --max-connections (bundled server).",
                  thresholds=((0.8, "orange"), (0.9, "red"))),
            stat("Messages /s", "ops", "messages", rate("wsops_messages_total", sel),
                  "Data messages received and sent per second."),
            stat("Delivery p99", "s", "p99", p99,
                  "99th percentile of publish-to-socket delivery latency (bundled server)."),
            stat("Draining nodes", "short", "draining", f"sum(wsops_draining{sel})",
                  "Nodes draining now (SIGTERM or wsops drain).", thresholds=((1, "orange"),)),
        ]),
        ("Connections", [
            ts("Connections by instance", "short",
                ("{{instance}}", f"sum by (instance) (wsops_connections_open{sel})"),
                desc="Open connections per node: a lopsided fleet shows here."),
            _churn(sel),
            _close_codes(sel),
            _handshake_failures(sel),
        ]),
        ("Messages", [
            ts("Messages /s", "ops",
                ("{{direction}}", rate("wsops_messages_total", sel, "direction")),
                desc="Data messages per second, in (from clients) and out (to clients)."),
            ts("Message bytes /s", "Bps",
                ("{{direction}}", rate("wsops_message_bytes_total", sel, "direction")),
                desc="Payload bytes per second, in and out."),
            ts("Delivery latency", "s",
                *((f"p{round(q * 100)}", quantile(q, "wsops_delivery_latency_seconds", sel))
                  for q in (0.5, 0.95, 0.99)),
                desc="Publish accepted to frame written, fleet-wide quantiles (bundled server).",
                w=24),
        ]),
        ("Rooms and operations", [
            _audience(sel),
            _resumes(sel),
            _op_errors(sel),
            _op_latency(sel),
        ]),
        ("Capacity", _capacity(sel)),
        ("Errors and pressure", [
            ts("Broker errors /s", "ops",
                ("{{instance}}", rate("wsops_broker_errors_total", sel, "instance")),
                desc="Broker operations that failed, per node."),
            ts("Slow consumers and rate limiting /s", "ops",
                ("slow consumer disconnects",
                 rate("wsops_slow_consumer_disconnects_total", sel)),
                ("rate-limited messages", rate("wsops_rate_limited_messages_total", sel)),
                desc="Connections closed for a full send queue (4000), messages refused by "
                "the per-connection rate limit."),
            ts("CPU of the busiest process", "percentunit",
                ("{{instance}}", f"max by (instance) (rate(process_cpu_seconds_total{sel}[{RI}]))"),
                desc="CPU time per second of each node's busiest process (worker): 1 is a full "
                "core, all one event loop can use (WsopsCpuSaturated fires above 0.9).", w=24),
        ]),
    ]


def _node(sel: str) -> list[Section]:
    return [
        ("Node", [
            stat("Build", "none", "{{version}} / Python {{python}}", f"wsops_build_info{sel}",
                  "wsops and Python versions of the node.", text_mode="name", w=6),
            stat("Connections", "short", "open", f"sum(wsops_connections_open{sel})",
                  "WebSocket connections open now.", w=3),
            stat("Capacity used", "percentunit", "used",
                  f"sum(wsops_connections_open{sel}) / sum(wsops_connections_max{sel})",
                  "Open connections over --max-connections (bundled server).",
                  thresholds=((0.8, "orange"), (0.9, "red")), w=3),
            stat("Uptime", "s", "uptime", f"min(time() - process_start_time_seconds{sel})",
                  "Time since the youngest process of the node started: a worker restarted "
                  "by the supervisor shows here."),
            stat("Draining", "none", "draining", f"max(wsops_draining{sel})",
                  "Whether the node drains now.", mappings=BOOL_MAP,
                  thresholds=((1, "orange"),)),
            stat("Broker", "none", "broker", f"min(wsops_broker_up{sel})",
                  "Whether the broker is reachable (bundled server).", mappings=UP_MAP,
                  thresholds=((1, "green"),)),
        ]),
        ("Connections and messages", [
            ts("Connections by route", "short",
                ("{{route}}", f"sum by (route) (wsops_connections_open{sel})"),
                desc="Open connections per route."),
            _churn(sel),
            _close_codes(sel),
            _handshake_failures(sel),
            ts("Messages /s by type", "ops",
                ("{{direction}} {{type}}", rate("wsops_messages_total", sel, "direction, type")),
                desc="Data messages per second by direction and frame type."),
            ts("Message size p99", "bytes",
                ("{{direction}}", quantile(0.99, "wsops_message_size_bytes", sel, "direction")),
                desc="99th percentile of message payload size, in and out."),
        ]),
        ("Rooms and operations", [
            _audience(sel),
            _resumes(sel),
            ts("Operations /s", "ops",
                ("{{op}}", rate("wsops_operation_duration_seconds_count", sel, "op")),
                desc="Client requests served per second, by op (bundled server).", w=8),
            replace(_op_errors(sel), w=8),
            replace(_op_latency(sel), w=8),
        ]),
        ("Latency", [
            heatmap("Delivery latency", "s", "wsops_delivery_latency_seconds", sel,
                     "Distribution of publish-to-socket delivery latency (bundled server)."),
            ts("Handler latency p99", "s",
                ("{{route}}", quantile(0.99, "wsops_handler_latency_seconds", sel, "route")),
                desc="Received to the handler asking for the next message, p99 by route."),
            heatmap("Event-loop lag", "s", "wsops_event_loop_lag_seconds", sel,
                     "How late the lag sampler's sleeps wake up: the loop was busy that long."),
            ts("Event-loop lag p99", "s",
                ("p99", quantile(0.99, "wsops_event_loop_lag_seconds", sel)),
                desc="99th percentile of event-loop lag."),
            ts("Ping RTT p99", "s",
                ("{{route}}", quantile(0.99, "wsops_ping_rtt_seconds", sel, "route")),
                desc="Heartbeat ping to the peer's next bytes, p99 by route."),
            ts("Broker publish latency p99", "s",
                ("p99", quantile(0.99, "wsops_broker_publish_latency_seconds", sel)),
                desc="Time the broker took to accept a publish, p99 (bundled server)."),
        ]),
        ("Process", [
            ts("Resident memory", "bytes",
                ("rss", f"sum(process_resident_memory_bytes{sel})"),
                desc="Resident set size of the node's processes."),
            ts("Memory per connection", "bytes",
                ("per connection", f"sum(wsops_memory_per_connection_bytes{sel})"),
                desc="RSS above the process's at start, divided by live connections (0 with "
                "none); noisy below 100 connections."),
            ts("CPU", "percentunit",
                ("all processes", rate("process_cpu_seconds_total", sel)),
                ("busiest process", f"max(rate(process_cpu_seconds_total{sel}[{RI}]))"),
                desc="CPU time per second (1 = one core busy). Each process (each worker) is "
                "one event loop on one core: the busiest near 1 is saturated "
                "(WsopsCpuSaturated fires above 0.9)."),
            ts("File descriptors", "short",
                ("open", f"sum(process_open_fds{sel})"),
                ("max", f"sum(process_max_fds{sel})"),
                desc="Open file descriptors against the soft RLIMIT_NOFILE."),
            *_gc(sel, "generation"),
        ]),
        ("Pressure and broker", [
            ts("Send queues", "bytes",
                ("all connections", f"sum(wsops_send_queue_bytes{sel})"),
                ("fullest connection", f"max(wsops_send_queue_max_bytes{sel})"),
                desc="Bytes waiting to be sent: total and on the fullest connection."),
            ts("Slow consumers and rate limiting /s", "ops",
                ("slow consumer disconnects",
                 rate("wsops_slow_consumer_disconnects_total", sel)),
                ("rate-limited messages", rate("wsops_rate_limited_messages_total", sel)),
                desc="Connections closed for a full send queue (4000), messages refused by "
                "the rate limit."),
            ts("Broker errors /s", "ops", ("errors", rate("wsops_broker_errors_total", sel)),
                desc="Broker operations that failed."),
        ]),
    ]


def _memory(sel: str) -> list[Section]:
    return [
        ("Memory", [
            ts("Resident memory", "bytes",
                ("{{instance}}", f"process_resident_memory_bytes{sel}"),
                desc="Resident set size per node."),
            ts("Memory per connection", "bytes",
                ("{{instance}}", f"wsops_memory_per_connection_bytes{sel}"),
                desc="RSS above each process's at start, divided by its live connections (0 with "
                "none); allocator noise dominates below 100 connections."),
            ts("RSS growth", "Bps",
                ("{{instance}}", f"deriv(process_resident_memory_bytes{sel}[1h])"),
                desc="Linear trend of RSS over the last hour: steady growth at a steady load "
                "is a leak."),
            ts("Memory per connection growth", "Bps",
                ("{{instance}}", f"deriv(wsops_memory_per_connection_bytes{sel}[1h])"),
                desc="Trend of memory per connection over the last hour."),
            ts("Connections", "short",
                ("{{instance}}", f"sum by (instance) (wsops_connections_open{sel})"),
                desc="Open connections per node, to read the memory trends against."),
            ts("Traced memory (tracemalloc)", "bytes",
                ("{{instance}} traced", f"wsops_tracemalloc_traced_bytes{sel}"),
                ("{{instance}} peak", f"wsops_tracemalloc_peak_bytes{sel}"),
                desc="Memory tracemalloc traces on a node being profiled.",
                event="only while `wsops leaks` profiles a node (tracemalloc is off otherwise)."),
        ]),
        ("Runtime", [
            *_gc(sel, "instance, generation"),
            ts("Open file descriptors", "short",
                ("{{instance}}", f"process_open_fds{sel}"),
                desc="Open file descriptors per node: growth at a steady load is a leak."),
        ]),
    ]


def _variables(job_selector: str, cluster_label: str, *, instance_multi: bool) -> Any:
    def query(name: str, label: str, selector: str, **kw: Any) -> Any:
        return g.Template(name=name, label=label, dataSource=DATASOURCE,
                          query=f"label_values(wsops_build_info{selector}, {name})",
                          refresh=g.REFRESH_ON_TIME_RANGE_CHANGE, **kw)

    in_cluster = f'{cluster_label}=~"$cluster"' if cluster_label else ""
    variables = [g.Template(name="datasource", label="Data source", query="prometheus",
                            type="datasource")]
    if cluster_label:
        variables.append(g.Template(
            name="cluster", label="Cluster", dataSource=DATASOURCE,
            query=f"label_values(wsops_build_info, {cluster_label})",
            refresh=g.REFRESH_ON_TIME_RANGE_CHANGE))
    variables += [
        query("job", "Job", f"{{{in_cluster}}}" if in_cluster else "", multi=True,
              includeAll=True),
        query("instance", "Instance",
              "{" + ", ".join(p for p in (in_cluster, job_selector) if p) + "}",
              multi=instance_multi, includeAll=instance_multi),
    ]
    return g.Templating(list=variables)


def build_dashboards(
    job_selector: str = 'job=~"$job"', cluster_label: str = "",
) -> dict[str, dict[str, Any]]:
    """filename (e.g. "wsops-fleet.json") -> dashboard JSON (a dict ready for json.dumps).

    ``cluster_label`` (e.g. "cluster") adds a ``cluster`` variable that scopes every query,
    for Prometheus servers that hold several clusters' nodes.
    """
    scope = [f'{cluster_label}=~"$cluster"'] if cluster_label else []
    sel = "{" + ", ".join([*scope, job_selector, 'instance=~"$instance"']) + "}"
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
            graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR, panels=layout(sections),
            templating=_variables(job_selector, cluster_label, instance_multi=multi),
            description=(f"{title} (generated by wsops; edit "
                         "wsops/observability/grafana_dashboards.py)."),
        )
        out[f"{uid}.json"] = importable(modernize_dashboard(to_plain(dash)))
    return out


__all__ = ["DASHBOARD_UIDS", "EVENT_ONLY_MARKER", "PanelQuery", "build_dashboards", "concrete",
           "panel_queries"]
