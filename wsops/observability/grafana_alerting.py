"""The wsops alerts as Grafana-managed alert rules (file provisioning, apiVersion 1), built with
grafanalib from the same specs as the Prometheus rules.

grafanalib 0.7.1 emits the ruler API's shape (``grafana_alert`` nested) and the legacy
expression datasource uid ``-100``; file provisioning in Grafana 10/11 wants flat rules with
``title``, ``condition``, ``data``, ``noDataState`` and ``execErrState``, and expressions on the
``__expr__`` datasource. Each rule is reshaped after grafanalib builds it.
"""

from __future__ import annotations

from typing import Any

from grafanalib import core as g

from wsops.observability.alerts import ALERTS, GROUP, AlertOptions, rendered

EXPRESSION_DATASOURCE = {"type": "__expr__", "uid": "__expr__"}
LEGACY_EXPRESSION_UID = "-100"
# What each server-side expression type reads from its model (grafanalib writes them all).
_EXPRESSION_KEYS = {
    "reduce": ("expression", "reducer", "settings"),
    "math": ("expression",),
    "threshold": ("expression", "conditions"),
}


def grafana_alerting(opts: AlertOptions) -> dict[str, Any]:
    """Alert provisioning: one folder ``wsops``, one group evaluated every minute."""
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
    group = g.AlertGroup(name=GROUP, rules=[], folder="wsops", evaluateInterval="1m")
    data = group.to_json_data()
    data["rules"] = rules
    data["orgId"] = 1
    return {"apiVersion": 1, "groups": [data]}


def _query(item: dict[str, Any]) -> dict[str, Any]:
    """A Prometheus query: what it needs, without grafanalib's legacy graph-panel keys."""
    old = item["model"]
    return {
        **item,
        "queryType": "",
        "model": {
            "refId": old["refId"], "expr": old["expr"], "instant": True, "range": False,
            "datasource": {"type": "prometheus", "uid": item["datasourceUid"]},
            "intervalMs": 60000, "maxDataPoints": 43200,
        },
    }


def _expression(item: dict[str, Any]) -> dict[str, Any]:
    """A server-side expression on the ``__expr__`` datasource, with its type's keys only."""
    old = item["model"]
    model = {"refId": old["refId"], "type": old["type"],
             "datasource": dict(EXPRESSION_DATASOURCE), "hide": False,
             "intervalMs": 1000, "maxDataPoints": 43200}
    model.update({k: old[k] for k in _EXPRESSION_KEYS[old["type"]] if k in old})
    return {**item, "datasourceUid": EXPRESSION_DATASOURCE["uid"], "model": model}


def _flatten(ruler: dict[str, Any], dashboard_uid: str) -> dict[str, Any]:
    alert = ruler["grafana_alert"]
    data = [_expression(item) if item.get("datasourceUid") == LEGACY_EXPRESSION_UID
            else _query(item) for item in alert["data"]]
    return {
        "uid": ruler["uid"],
        "title": alert["title"],
        "condition": alert["condition"],
        "data": data,
        "noDataState": "OK",
        "execErrState": "Error",
        "for": ruler["for"],
        "annotations": {**ruler["annotations"], "__dashboardUid__": dashboard_uid},
        "labels": ruler["labels"],
        "isPaused": False,
    }
