"""Every wsops alert, specified once, rendered as a Prometheus rule file and as Grafana alert
provisioning (through grafanalib, reshaped to Grafana's file-provisioning format).

Expressions use ``{sel}`` for the job selector and ``{slo}``/``{budget}`` for the delivery
latency objective, so one spec serves any deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grafanalib import core as g

SLO_TARGET = 0.99  # share of publishes delivered within the SLO threshold


def _burn(long: str, short: str, factor: str) -> str:
    """Multi-window burn rate: the share of slow publishes over both windows, against the
    budget times ``factor`` (Google SRE workbook, ch. 5)."""

    def bad(window: str) -> str:
        return ("(1 - sum by (job) (rate(wsops_delivery_latency_seconds_bucket{sel_le}"
                f"[{window}])) / sum by (job) (rate(wsops_delivery_latency_seconds_count{{sel}}"
                f"[{window}])))")

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
        "wsops-fleet",
    ),
    AlertSpec(
        "WsopsDeliveryLatencyBurnSlow", "warning",
        _burn("6h", "30m", "6"),
        "15m",
        "{{ $labels.job }} burns its delivery-latency error budget 6x too fast",
        "Over both 6h and 30m, publishes miss the {slo_ms} ms objective six times more often than "
        "the budget allows: the 30-day budget goes in about 5 days.",
        "wsops-fleet",
    ),
    AlertSpec(
        "WsopsAbnormalClosureSpike", "warning",
        "sum by (job, instance) (rate(wsops_connections_closed_total{sel,code=~\"1006|1011\"}[5m]))"
        " > 0.2 * sum by (job, instance) (rate(wsops_connections_closed_total{sel}[5m]))"
        " and sum by (job, instance) (rate(wsops_connections_closed_total{sel,code=~\"1006|1011\"}"
        "[5m])) > 0.1",
        "10m",
        "Many connections on {{ $labels.instance }} end abnormally",
        "Over 20% of closed connections ended with 1006 (lost, no close frame) or 1011 "
        "(server error) for 10 minutes: network trouble, a load balancer timeout, or crashes.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsEventLoopLag", "warning",
        "histogram_quantile(0.99, sum by (job, instance, le) "
        "(rate(wsops_event_loop_lag_seconds_bucket{sel}[5m]))) > 0.1",
        "5m",
        "Event loop of {{ $labels.instance }} lags (p99 over 100 ms)",
        "The 99th percentile event-loop lag is above 100 ms: something blocks the loop (CPU-bound "
        "work, a synchronous call) and every connection of the node waits.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsMemoryLeakSuspected", "warning",
        "wsops_memory_per_connection_bytes{sel} > 1.2 * (wsops_memory_per_connection_bytes{sel}"
        " offset 3h) and on (job, instance) deriv(wsops_process_resident_memory_bytes{sel}[3h])"
        " > 0 and on (job, instance) sum by (job, instance) (wsops_connections_open{sel}) > 10",
        "1h",
        "Memory per connection keeps growing on {{ $labels.instance }}",
        "Memory per open connection rose more than 20% over 3 hours while RSS grew: growth that "
        "more connections do not explain, the shape of a leak.",
        "wsops-memory",
    ),
    AlertSpec(
        "WsopsSlowConsumers", "warning",
        "sum by (job, instance) (increase(wsops_slow_consumer_disconnects_total{sel}[10m])) > 10",
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
        "WsopsDrainStuck", "warning",
        "wsops_draining{sel} == 1 and on (job, instance) "
        "sum by (job, instance) (wsops_connections_open{sel}) > 0",
        "10m",
        "Drain of {{ $labels.instance }} is not finishing",
        "The node has been draining for 10 minutes and still holds connections; the drain "
        "deadline should have closed them.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsNearConnectionCapacity", "warning",
        "sum by (job, instance) (wsops_connections_open{sel})"
        " / on (job, instance) wsops_connections_max{sel} > 0.9",
        "5m",
        "{{ $labels.instance }} is above 90% of its connection limit",
        "New connections will soon get HTTP 503: add nodes or raise --max-connections.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsNearFdLimit", "warning",
        "wsops_process_open_fds{sel} / wsops_process_max_fds{sel} > 0.9",
        "5m",
        "{{ $labels.instance }} uses over 90% of its file descriptors",
        "Each connection holds a file descriptor; at the limit accept() fails and the node "
        "refuses connections.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsAuthFailureSpike", "warning",
        "sum by (job, instance) (rate(wsops_handshake_failures_total"
        "{sel,reason=~\"auth|http_401|http_403\"}[5m])) > 0.5",
        "10m",
        "Many refused logins on {{ $labels.instance }}",
        "More than one upgrade every two seconds is refused for authentication for 10 minutes: "
        "expired tokens after a key rotation, a misconfigured client, or an attack.",
        "wsops-node",
    ),
    AlertSpec(
        "WsopsHeartbeatTimeouts", "warning",
        "sum by (job, instance) (rate(wsops_heartbeat_timeouts_total{sel}[5m])) > 0.1",
        "10m",
        "Peers of {{ $labels.instance }} stop answering heartbeats",
        "Connections are closed because pings go unanswered: dead peers, a proxy dropping idle "
        "connections, or a node whose event loop is too late to see the pongs.",
        "wsops-node",
    ),
)


def _fmt(template: str, sel: str, slo: float) -> str:
    budget = round(1 - SLO_TARGET, 6)
    inner = sel.strip("{}")
    le = f'le="{float(slo)!r}"'
    return (template
            .replace("{sel_le}", "{" + ",".join(p for p in (inner, le) if p) + "}")
            .replace("{sel,", "{" + (inner + "," if inner else ""))
            .replace("{sel}", sel if inner else "")
            .replace("{budget}", repr(budget))
            .replace("{slo_ms}", f"{slo * 1000:g}")
            .replace("{pct_bad}", f"{budget * 100:g}%"))


@dataclass(frozen=True)
class AlertOptions:
    job_selector: str = '{job="wsops"}'
    slo_seconds: float = 0.010
    runbook_base_url: str = "runbooks/"
    grafana_base_url: str = ""
    datasource_uid: str = "prometheus"


def rendered(opts: AlertOptions) -> list[dict[str, Any]]:
    """Each alert as a Prometheus alerting rule."""
    rules = []
    for a in ALERTS:
        rules.append({
            "alert": a.name,
            "expr": _fmt(a.expr, opts.job_selector, opts.slo_seconds),
            "for": a.for_,
            "labels": {"severity": a.severity},
            "annotations": {
                "summary": _fmt(a.summary, opts.job_selector, opts.slo_seconds),
                "description": _fmt(a.description, opts.job_selector, opts.slo_seconds),
                "runbook_url": f"{opts.runbook_base_url}{a.name}.md",
                "dashboard_url": f"{opts.grafana_base_url}/d/{a.dashboard}"
                                 "?var-instance={{ $labels.instance }}",
            },
        })
    return rules


def prometheus_rules(opts: AlertOptions) -> dict[str, Any]:
    """The rule file (``promtool check rules`` accepts it)."""
    return {"groups": [{"name": "wsops", "rules": rendered(opts)}]}


def grafana_alerting(opts: AlertOptions) -> dict[str, Any]:
    """Grafana alert provisioning (apiVersion 1) built with grafanalib from the same specs.

    grafanalib 0.7.1 emits the ruler API's shape (``grafana_alert`` nested); file provisioning
    in Grafana 10/11 wants flat rules with ``title``, ``condition``, ``data``, ``noDataState``
    and ``execErrState``, so each rule is reshaped after grafanalib builds it.
    """
    rules = []
    for a, r in zip(ALERTS, rendered(opts), strict=True):
        rule = g.AlertRulev9(
            title=a.name,
            uid=f"wsops-{a.name[5:].lower()}"[:40],
            triggers=[
                # A comparison returns only the series that breach: count them as 1s.
                g.Target(expr=f"({r['expr']}) * 0 + 1", refId="A", datasource=opts.datasource_uid),
                g.AlertExpression(refId="B", expression="A", expressionType=g.EXP_TYPE_REDUCE,
                                  reduceFunction=g.EXP_REDUCER_FUNC_LAST,
                                  reduceMode=g.EXP_REDUCER_FUNC_DROP_NN),
                g.AlertExpression(refId="C", expression="$B > 0", expressionType=g.EXP_TYPE_MATH),
            ],
            annotations=dict(r["annotations"]),
            labels=dict(r["labels"]),
            evaluateFor=a.for_,
            condition="C",
            noDataAlertState=g.ALERTRULE_STATE_DATA_OK,
            errorAlertState=g.ALERTRULE_STATE_DATA_ERROR,
            timeRangeFrom=600,
            dashboard_uid=a.dashboard,
        )
        rules.append(_flatten(rule.to_json_data(), a.dashboard))
    group = g.AlertGroup(name="wsops", rules=[], folder="wsops", evaluateInterval="1m")
    data = group.to_json_data()
    data["rules"] = rules
    data["orgId"] = 1
    return {"apiVersion": 1, "groups": [data]}


def _flatten(ruler: dict[str, Any], dashboard_uid: str) -> dict[str, Any]:
    alert = ruler["grafana_alert"]
    for item in alert["data"]:
        if item.get("datasourceUid") != "-100":
            # Keep what a Prometheus query needs; drop grafanalib's legacy graph-panel keys.
            old = item["model"]
            item["queryType"] = ""
            item["model"] = {
                "refId": old["refId"], "expr": old["expr"], "instant": True, "range": False,
                "datasource": {"type": "prometheus", "uid": item["datasourceUid"]},
                "intervalMs": 60000, "maxDataPoints": 43200,
            }
    return {
        "uid": ruler["uid"],
        "title": alert["title"],
        "condition": alert["condition"],
        "data": alert["data"],
        "noDataState": "OK",
        "execErrState": "Error",
        "for": ruler["for"],
        "annotations": {**ruler["annotations"], "__dashboardUid__": dashboard_uid},
        "labels": ruler["labels"],
        "isPaused": False,
    }
