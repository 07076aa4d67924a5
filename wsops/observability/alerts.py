"""Every wsops alert, specified once, rendered as a Prometheus rule file and as a Kubernetes
``PrometheusRule`` (Grafana-managed rules: :mod:`wsops.observability.grafana_alerting`).

Expressions use ``{sel}`` for the job selector, ``{slo}``/``{budget}`` for the delivery latency
objective, and ``{fleet}``/``{node}``/``{process}`` for the labels an aggregation keeps (``job``;
``job, instance``; ``job, instance, worker``, each led by the cluster label when one is
configured), so one spec serves any deployment, mixin-style.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

SLO_TARGET = 0.99  # share of publishes delivered within the SLO threshold
GROUP = "wsops"
PLACEHOLDER_RUNBOOK_BASE_URL = "https://wsops.example/runbooks/"
"""Where runbook links point when no base is given and wsops declares no repository URL: a
reserved ``.example`` host, so a link nobody configured is plainly a placeholder."""
DEFAULT_GRAFANA_URL = "http://localhost:3000"
"""Grafana's own default address (the README's ``docker run -p 3000:3000 grafana/grafana``)."""
_REPOSITORY_LABELS = ("repository", "source", "source code", "code")


def _burn(long: str, short: str, factor: str) -> str:
    """Multi-window burn rate: the share of slow publishes over both windows, against the
    budget times ``factor`` (Google SRE workbook, ch. 5)."""

    def bad(window: str) -> str:
        return ("(1 - sum by ({fleet}) (rate(wsops_delivery_latency_seconds_bucket{sel_le}"
                f"[{window}])) / sum by ({{fleet}}) (rate("
                f"wsops_delivery_latency_seconds_count{{sel}}[{window}])))")

    return f"{bad(long)} > ({factor} * {{budget}}) and {bad(short)} > ({factor} * {{budget}})"


@dataclass(frozen=True)
class AlertSpec:
    name: str
    severity: str  # critical | warning | info
    expr: str
    for_: str
    summary: str
    description: str
    dashboard: str  # dashboard uid the alert links to
    scope: str = "node"  # fleet: the alert's series carry job only (no instance to link to)


ALERTS: tuple[AlertSpec, ...] = (
    AlertSpec(
        "WsopsNodeDown", "critical",
        "up{sel} == 0",
        "2m",
        "wsops node {{ $labels.instance }} is down",
        "Prometheus cannot scrape {{ $labels.instance }} ({{ $labels.job }}) for 2 minutes: the "
        "process is gone, hung, or its admin listener is unreachable.",
        "wsops-fleet",
    ),
    AlertSpec(
        "WsopsDeliveryLatencyBurnFast", "critical",
        _burn("1h", "5m", "14.4"),
        "2m",
        "{{ $labels.job }} burns its delivery-latency error budget 14.4x too fast",
        "More than {pct_bad} of publishes took over {slo_ms} ms to reach sockets, at 14.4 times "
        "the sustainable rate over both 1h and 5m: the 30-day budget goes in about 2 days.",
        "wsops-fleet", scope="fleet",
    ),
    AlertSpec(
        "WsopsDeliveryLatencyBurnSlow", "warning",
        _burn("6h", "30m", "6"),
        "15m",
        "{{ $labels.job }} burns its delivery-latency error budget 6x too fast",
        "Over both 6h and 30m, publishes miss the {slo_ms} ms objective six times more often than "
        "the budget allows: the 30-day budget goes in about 5 days.",
        "wsops-fleet", scope="fleet",
    ),
    AlertSpec(
        "WsopsAbnormalClosureSpike", "warning",
        "sum by ({node}) (rate(wsops_connections_closed_total{sel,code=~\"1006|1011\"}[5m]))"
        " > 0.2 * sum by ({node}) (rate(wsops_connections_closed_total{sel}[5m]))"
        " and sum by ({node}) (rate(wsops_connections_closed_total{sel,code=~\"1006|1011\"}"
        "[5m])) > 0.1",
        "10m",
        "Many connections on {{ $labels.instance }} end abnormally",
        "Over 20% of closed connections ended with 1006 (lost, no close frame) or 1011 "
        "(server error) for 10 minutes: network trouble, a load balancer timeout, or crashes.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsEventLoopLag", "warning",
        # Per process: each --workers worker has its own loop; merging them would dilute one
        # stuck loop into its healthy siblings.
        "histogram_quantile(0.99, sum by ({process}, le) "
        "(rate(wsops_event_loop_lag_seconds_bucket{sel}[5m]))) > 0.1",
        "5m",
        "Event loop of {{ $labels.instance }} lags (p99 over 100 ms)",
        "The 99th percentile event-loop lag is above 100 ms: something blocks the loop (CPU-bound "
        "work, a synchronous call) and every connection of the node waits.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsCpuSaturated", "warning",
        "rate(process_cpu_seconds_total{sel}[5m]) > 0.9",
        "15m",
        "A wsops process on {{ $labels.instance }} uses a whole CPU core",
        "A process of {{ $labels.instance }} (the worker label says which, with --workers) has "
        "used over 90% of one core for 15 minutes. Each wsops process is one event loop on one "
        "core and cannot use more: it is saturated, and every added message waits longer.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsFleetCannotLoseANode", "warning",
        # The largest node's connections would not fit under the others' limits, or the fleet's
        # CPU would not fit on the others' processes (one core each) at 90%.
        "(sum by ({fleet}) (wsops_connections_open{sel}) > sum by ({fleet}) "
        "(wsops_connections_max{sel}) - max by ({fleet}) (sum by ({node}) "
        "(wsops_connections_max{sel}))) or (sum by ({fleet}) (rate(process_cpu_seconds_total"
        "{sel}[10m])) > 0.9 * (count by ({fleet}) (process_cpu_seconds_total{sel}) - max by "
        "({fleet}) (count by ({node}) (process_cpu_seconds_total{sel}))))",
        "15m",
        "{{ $labels.job }} could not absorb the loss of its largest node",
        "If the largest node went away (a crash, a drain, a deploy), its connections would not "
        "fit under the other nodes' connection limits, or the fleet's CPU would not fit on the "
        "other nodes' processes: the reconnect wave would be refused or saturate them. Add a "
        "node (wsops plan says how many the load needs).",
        "wsops-fleet", scope="fleet",
    ),
    AlertSpec(
        "WsopsMemoryLeakSuspected", "warning",
        "wsops_memory_per_connection_bytes{sel} > 1.2 * (wsops_memory_per_connection_bytes{sel}"
        " offset 3h) and on ({process}) deriv(process_resident_memory_bytes{sel}[3h])"
        " > 0 and on ({process}) sum by ({process}) (wsops_connections_open{sel}) > 10",
        "1h",
        "Memory per connection keeps growing on {{ $labels.instance }}",
        "Memory per open connection rose more than 20% over 3 hours while RSS grew: growth that "
        "more connections do not explain, the shape of a leak.",
        "wsops-memory",
    ),
    AlertSpec(
        "WsopsSlowConsumers", "warning",
        "sum by ({node}) (increase(wsops_slow_consumer_disconnects_total{sel}[10m])) > 10",
        "10m",
        "{{ $labels.instance }} disconnects slow consumers",
        "More than 10 connections in 10 minutes filled their send queue and were closed with "
        "4000: clients that cannot keep up, or a node too slow to write.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsBrokerDown", "critical",
        "wsops_broker_up{sel} == 0",
        "1m",
        "Broker unreachable from {{ $labels.instance }}",
        "The node cannot reach its broker: messages no longer cross nodes and history may have "
        "gaps (clients are told recovered:false).",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsResumeFailures", "warning",
        # 10m windows under a 15m `for`: one burst (a restart of a node on the memory broker)
        # clears before it fires; a minimum of failures keeps a quiet fleet from paging on one.
        "sum by ({fleet}) (rate(wsops_resumes_total{sel,recovered=\"false\"}[10m]))"
        " / sum by ({fleet}) (rate(wsops_resumes_total{sel}[10m])) > 0.2"
        " and sum by ({fleet}) (increase(wsops_resumes_total{sel,recovered=\"false\"}[10m]))"
        " > 10",
        "15m",
        "Clients of {{ $labels.job }} often cannot resume without a gap",
        "For 15 minutes more than 20% of resuming subscribes (and more than 10 in 10 minutes) "
        "were told recovered:false: the messages they missed were no longer in history (too "
        "short or expired, a broker restarted empty), so clients must reload.",
        "wsops-fleet", scope="fleet",
    ),
    AlertSpec(
        "WsopsDrainStuck", "warning",
        "wsops_draining{sel} == 1 and on ({node}) "
        "sum by ({node}) (wsops_connections_open{sel}) > 0",
        "10m",
        "Drain of {{ $labels.instance }} is not finishing",
        "The node has been draining for 10 minutes and still holds connections; the drain "
        "deadline should have closed them.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsNearConnectionCapacity", "warning",
        # Per process: every worker enforces --max-connections on its own.
        "sum by ({process}) (wsops_connections_open{sel})"
        " / on ({process}) wsops_connections_max{sel} > 0.9",
        "5m",
        "{{ $labels.instance }} is above 90% of its connection limit",
        "New connections will soon get HTTP 503: add nodes or raise --max-connections.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsNearFdLimit", "warning",
        "process_open_fds{sel} / process_max_fds{sel} > 0.9",
        "5m",
        "{{ $labels.instance }} uses over 90% of its file descriptors",
        "Each connection holds a file descriptor; at the limit accept() fails and the node "
        "refuses connections.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsAuthFailureSpike", "warning",
        "sum by ({node}) (rate(wsops_handshake_failures_total"
        "{sel,reason=~\"auth|http_401|http_403\"}[5m])) > 0.5",
        "10m",
        "Many refused logins on {{ $labels.instance }}",
        "More than one upgrade every two seconds is refused for authentication for 10 minutes: "
        "expired tokens after a key rotation, a misconfigured client, or an attack.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsHeartbeatTimeouts", "warning",
        "sum by ({node}) (rate(wsops_heartbeat_timeouts_total{sel}[5m])) > 0.1",
        "10m",
        "Peers of {{ $labels.instance }} stop answering heartbeats",
        "Connections are closed because pings go unanswered: dead peers, a proxy dropping idle "
        "connections, or a node whose event loop is too late to see the pongs.",
        "wsops-node",
    ),
)


def default_runbook_base_url() -> str:
    """``<repository>/blob/main/runbooks/`` when the installed wsops declares a repository URL
    (``[project.urls]`` Repository or Source in pyproject), else the placeholder."""
    try:
        urls = importlib.metadata.metadata("wsops").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = str(entry).partition(",")
        if label.strip().lower() in _REPOSITORY_LABELS and is_absolute_url(url.strip()):
            return url.strip().rstrip("/") + "/blob/main/runbooks/"
    return PLACEHOLDER_RUNBOOK_BASE_URL


def is_absolute_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class AlertOptions:
    """How the alerts are rendered for one deployment (the mixin's config)."""

    job_selector: str = '{job="wsops"}'
    slo_seconds: float = 0.010
    runbook_base_url: str = field(default_factory=default_runbook_base_url)
    grafana_base_url: str = DEFAULT_GRAFANA_URL
    datasource_uid: str = "prometheus"
    cluster_label: str = ""  # e.g. "cluster": kept by every aggregation, set in dashboard links
    rule_labels: tuple[tuple[str, str], ...] = ()  # PrometheusRule metadata labels (ruleSelector)

    def __post_init__(self) -> None:
        for name in ("runbook_base_url", "grafana_base_url"):
            if not is_absolute_url(getattr(self, name)):
                raise ValueError(f"{name} must be an absolute http(s) URL: "
                                 f"{getattr(self, name)!r}")
        if self.cluster_label and not _LABEL_NAME.fullmatch(self.cluster_label):
            raise ValueError(f"not a Prometheus label name: {self.cluster_label!r}")

    def grouping(self, scope: str) -> str:
        """The labels an aggregation of ``scope`` (fleet, node, process) keeps."""
        labels = {"fleet": ["job"], "node": ["job", "instance"],
                  "process": ["job", "instance", "worker"]}[scope]
        return ", ".join([self.cluster_label, *labels] if self.cluster_label else labels)


def _fmt(template: str, opts: AlertOptions) -> str:
    sel, slo = opts.job_selector, opts.slo_seconds
    budget = round(1 - SLO_TARGET, 6)
    inner = sel.strip("{}")
    le = f'le="{float(slo)!r}"'
    return (template
            .replace("{sel_le}", "{" + ",".join(p for p in (inner, le) if p) + "}")
            .replace("{sel,", "{" + (inner + "," if inner else ""))
            .replace("{sel}", sel if inner else "")
            .replace("{fleet}", opts.grouping("fleet"))
            .replace("{node}", opts.grouping("node"))
            .replace("{process}", opts.grouping("process"))
            .replace("{budget}", repr(budget))
            .replace("{slo_ms}", f"{slo * 1000:g}")
            .replace("{pct_bad}", f"{budget * 100:g}%"))


def dashboard_url(a: AlertSpec, opts: AlertOptions) -> str:
    """The alert's dashboard with its variables set from the labels the alert's series carry
    (a fleet-wide alert has no instance: the dashboard then shows every instance)."""
    labels = ["job"] if a.scope == "fleet" else ["job", "instance"]
    params = [f"var-{name}={{{{ $labels.{name} }}}}" for name in labels]
    if opts.cluster_label:
        params.insert(0, f"var-cluster={{{{ $labels.{opts.cluster_label} }}}}")
    return f"{opts.grafana_base_url.rstrip('/')}/d/{a.dashboard}?{'&'.join(params)}"


def runbook_url(a: AlertSpec, opts: AlertOptions) -> str:
    return f"{opts.runbook_base_url.rstrip('/')}/{a.name}.md"


def rendered(opts: AlertOptions) -> list[dict[str, Any]]:
    """Each alert as a Prometheus alerting rule."""
    return [{
        "alert": a.name,
        "expr": _fmt(a.expr, opts),
        "for": a.for_,
        "labels": {"severity": a.severity},
        "annotations": {
            "summary": _fmt(a.summary, opts),
            "description": _fmt(a.description, opts),
            "runbook_url": runbook_url(a, opts),
            "dashboard_url": dashboard_url(a, opts),
        },
    } for a in ALERTS]


def prometheus_rules(opts: AlertOptions) -> dict[str, Any]:
    """The rule file (``promtool check rules`` accepts it)."""
    return {"groups": [{"name": GROUP, "rules": rendered(opts)}]}


def prometheus_rule(opts: AlertOptions) -> dict[str, Any]:
    """The same groups as a prometheus-operator ``PrometheusRule`` (Kubernetes manifest; the
    namespace is left to ``kubectl apply -n`` or kustomize)."""
    labels = {"app.kubernetes.io/name": "wsops", "app.kubernetes.io/component": "alerting",
              **dict(opts.rule_labels)}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "wsops-alerts", "labels": labels},
        "spec": prometheus_rules(opts),
    }
