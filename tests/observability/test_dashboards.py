"""The generated Grafana dashboards: the fields Grafana 10/11 needs, the import inputs, nothing
grafanalib writes for old Grafana, determinism, and queries that use only wsops metric families
and known variables. (The end-to-end test runs every query against a real Prometheus.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from wsops.observability.alerts import AlertOptions
from wsops.observability.build import build_all
from wsops.observability.grafana_dashboards import (
    DASHBOARD_UIDS,
    EVENT_ONLY_MARKER,
    PanelQuery,
    build_dashboards,
    concrete,
    panel_queries,
)

DS_REF = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"timeseries", "stat", "heatmap", "row", "text"}

# The metric families wsops exposes (README "Metric families") that the dashboards chart, with
# the standard process_* names, plus Prometheus' own ``up``.
COUNTERS_AND_GAUGES = (
    "wsops_connections_open", "wsops_connections_opened_total", "wsops_connections_closed_total",
    "wsops_handshake_failures_total", "wsops_messages_total", "wsops_message_bytes_total",
    "wsops_rate_limited_messages_total", "wsops_slow_consumer_disconnects_total",
    "wsops_broker_errors_total", "process_cpu_seconds_total", "wsops_gc_collections_total",
    "wsops_gc_pause_seconds_total", "wsops_gc_frozen_objects",
    "wsops_broker_up", "wsops_draining", "wsops_send_queue_bytes",
    "wsops_send_queue_max_bytes", "wsops_build_info", "process_resident_memory_bytes",
    "process_open_fds", "process_max_fds", "process_start_time_seconds",
    "wsops_memory_per_connection_bytes", "wsops_connections_max",
    "wsops_tracemalloc_traced_bytes", "wsops_tracemalloc_peak_bytes",
    "wsops_rooms", "wsops_subscriptions", "wsops_users", "wsops_resumes_total",
    "wsops_operation_errors_total",
)
HISTOGRAMS = (
    "wsops_message_size_bytes", "wsops_connection_duration_seconds",
    "wsops_handler_latency_seconds", "wsops_ping_rtt_seconds", "wsops_delivery_latency_seconds",
    "wsops_broker_publish_latency_seconds", "wsops_event_loop_lag_seconds",
    "wsops_gc_pause_duration_seconds", "wsops_operation_duration_seconds",
)
KNOWN_METRICS = {
    "up", *COUNTERS_AND_GAUGES,
    *(f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")),
}  # fmt: skip
PROMQL_FUNCTIONS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "deriv", "delta",
    "histogram_quantile", "clamp_min", "vector", "max_over_time", "avg_over_time", "time",
}  # fmt: skip
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset"}

EXPECTED_EVENT_ONLY = {
    ("wsops-fleet", "Close codes /s"),
    ("wsops-fleet", "Handshake failures by reason /s"),
    ("wsops-node", "Close codes /s"),
    ("wsops-node", "Handshake failures by reason /s"),
    ("wsops-fleet", "Operation errors /s"),
    ("wsops-node", "Operation errors /s"),
    ("wsops-memory", "Traced memory (tracemalloc)"),
}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return build_dashboards()


@pytest.fixture(scope="module")
def queries(dashboards: dict[str, dict[str, Any]]) -> list[PanelQuery]:
    return panel_queries(dashboards)


def all_panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) of every dict entry in a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers left once strings, matchers, ranges and
    grouping labels are gone, that are neither function calls nor keywords."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        if s[m.end():].lstrip().startswith("("):
            assert m.group() in PROMQL_FUNCTIONS, f"unexpected function {m.group()} in {expr}"
        elif m.group() not in PROMQL_KEYWORDS:
            names.add(m.group())
    return names


def test_one_file_per_dashboard_named_by_its_stable_uid(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    assert set(dashboards) == {f"{uid}.json" for uid in DASHBOARD_UIDS.values()}
    for filename, dash in dashboards.items():
        assert filename == f"{dash['uid']}.json"


def test_dashboards_have_the_top_level_fields_grafana_needs(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for dash in dashboards.values():
        assert dash["schemaVersion"] >= 36
        assert dash["title"].startswith("wsops / ")
        assert dash["editable"] is True
        assert dash["tags"] == ["wsops"]
        assert dash["refresh"] and set(dash["time"]) == {"from", "to"}
        assert dash["panels"]
        json.dumps(dash, allow_nan=False)  # plain JSON types only


def test_templating_has_datasource_job_and_instance_variables(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for filename, dash in dashboards.items():
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert list(variables) == ["datasource", "job", "instance"]
        ds = variables["datasource"]
        assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
        assert ds["current"]["value"] == ds["current"]["text"] == "${DS_PROMETHEUS}"
        for name in ("job", "instance"):
            var = variables[name]
            assert var["type"] == "query"
            assert var["datasource"] == DS_REF
            assert var["query"]["query"] == var["definition"]
            assert var["definition"].startswith("label_values(wsops_build_info")
        assert variables["instance"]["definition"] == (
            'label_values(wsops_build_info{job=~"$job"}, instance)'
        )
        fleet_wide = filename != "wsops-node.json"
        assert variables["instance"]["multi"] is fleet_wide
        assert variables["instance"]["includeAll"] is fleet_wide


def test_import_asks_for_the_prometheus_data_source(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for dash in dashboards.values():
        assert dash["__inputs"] == [{
            "name": "DS_PROMETHEUS", "label": "Prometheus",
            "description": "Where the wsops nodes' metrics are", "type": "datasource",
            "pluginId": "prometheus", "pluginName": "Prometheus",
        }]
        requires = {(r["type"], r["id"]) for r in dash["__requires"]}
        kinds = {p["type"] for p in all_panels(dash)} - {"row"}
        assert requires == {("grafana", "grafana"), ("datasource", "prometheus"),
                            *(("panel", k) for k in kinds)}


def _grafana_import(dash: dict[str, Any], inputs: dict[str, str]) -> dict[str, Any]:
    """What Grafana's import does with a dashboard: every ``${INPUT}`` in a string becomes the
    input's value, ``__inputs`` is dropped (pkg/services/dashboardimport)."""
    text = json.dumps({k: v for k, v in dash.items() if k != "__inputs"})
    for name, value in inputs.items():
        text = text.replace("${" + name + "}", value)
    imported: dict[str, Any] = json.loads(text)
    return imported


def test_the_import_input_sets_the_datasource_variable_and_nothing_else(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    """Import puts the chosen uid into the ``datasource`` variable, which every query follows;
    a provisioned copy (no import) has ``${DS_PROMETHEUS}`` nowhere but that variable's saved
    value, which matches no data source, so the variable picks one as it did with none saved."""
    for dash in dashboards.values():
        uses = [path for path, _, value in walk({k: v for k, v in dash.items()
                                                 if k != "__inputs"})
                if isinstance(value, str) and "DS_PROMETHEUS" in value]
        assert uses == ["/templating/list/0/current"] * 2, uses
        imported = _grafana_import(dash, {"DS_PROMETHEUS": "P1809F7CD0C75ACF3"})
        assert "DS_PROMETHEUS" not in json.dumps(imported)
        variable = imported["templating"]["list"][0]
        assert variable["name"] == "datasource"
        assert variable["current"]["value"] == "P1809F7CD0C75ACF3"
        for panel in all_panels(imported):
            assert panel["datasource"] == DS_REF


def test_provisioned_dashboards_resolve_through_the_provisioned_datasource() -> None:
    """The example provisioning's data source is a Prometheus one, the only one it defines and
    the default: the datasource variable (query "prometheus") falls back to it."""
    files = build_all(AlertOptions())
    (source,) = yaml.safe_load(files["provisioning/datasources/prometheus.yml"])["datasources"]
    assert (source["type"], source["isDefault"]) == ("prometheus", True)
    alerting = yaml.safe_load(files["provisioning/alerting/wsops-alerts.yml"])
    uids = {d["datasourceUid"] for g in alerting["groups"] for r in g["rules"] for d in r["data"]}
    assert uids == {source["uid"], "__expr__"}
    assert "-100" not in files["provisioning/alerting/wsops-alerts.yml"]  # the legacy uid
    for rule in alerting["groups"][0]["rules"]:
        for item in rule["data"]:
            kind = "__expr__" if item["datasourceUid"] == "__expr__" else "prometheus"
            assert item["model"]["datasource"] == {"type": kind, "uid": item["datasourceUid"]}
    provider = yaml.safe_load(files["provisioning/dashboards/wsops.yml"])["providers"][0]
    assert provider["type"] == "file"


def test_a_cluster_label_adds_a_cluster_variable_that_scopes_every_query() -> None:
    dashboards = build_dashboards(cluster_label="k8s_cluster")
    for dash in dashboards.values():
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert list(variables) == ["datasource", "cluster", "job", "instance"]
        assert variables["cluster"]["definition"] == (
            "label_values(wsops_build_info, k8s_cluster)")
        assert variables["job"]["definition"] == (
            'label_values(wsops_build_info{k8s_cluster=~"$cluster"}, job)')
        assert variables["instance"]["definition"] == (
            'label_values(wsops_build_info{k8s_cluster=~"$cluster", job=~"$job"}, instance)')
    for q in panel_queries(dashboards):
        for selector in re.findall(r"[A-Za-z_:][\w:]*(\{[^}]*\})", q.expr):
            assert selector == (
                '{k8s_cluster=~"$cluster", job=~"$job", instance=~"$instance"}'), q
        assert 'k8s_cluster=~".*"' in concrete(q.expr)


def test_every_panel_is_complete_and_uses_the_datasource_variable(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for dash in dashboards.values():
        ids = [p["id"] for p in all_panels(dash)]
        assert len(ids) == len(set(ids)), f"duplicate panel ids in {dash['uid']}"
        for panel in all_panels(dash):
            where = f"{dash['uid']}/{panel['title']}"
            assert panel["type"] in PANEL_TYPES, where
            assert set(panel["gridPos"]) == {"x", "y", "w", "h"}, where
            assert all(isinstance(v, int) for v in panel["gridPos"].values()), where
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, where
            assert panel["datasource"] == DS_REF, where
            if panel["type"] in ("row", "text"):
                continue
            assert panel["fieldConfig"]["defaults"]["unit"], where
            assert panel["description"], where
            assert panel["targets"], where
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), where
            for target in panel["targets"]:
                assert target["expr"] and target["refId"], where
                assert target["datasource"] == DS_REF, where
                assert target["legendFormat"], where


def test_panels_do_not_overlap(dashboards: dict[str, dict[str, Any]]) -> None:
    for dash in dashboards.values():
        taken: dict[tuple[int, int], str] = {}
        for panel in dash["panels"]:
            pos = panel["gridPos"]
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in taken, (panel["title"], taken.get((x, y)))
                    taken[(x, y)] = panel["title"]


def test_heatmaps_show_prometheus_buckets_without_recalculating(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    heatmaps = [p for d in dashboards.values() for p in all_panels(d) if p["type"] == "heatmap"]
    assert {p["title"] for p in heatmaps} == {"Delivery latency", "Event-loop lag"}
    for panel in heatmaps:
        (target,) = panel["targets"]
        assert target["format"] == "heatmap"
        assert target["legendFormat"] == "{{le}}"
        assert re.fullmatch(
            r"sum by \(le\) \(rate\(wsops_\w+_seconds_bucket\{[^}]*\}\[\$__rate_interval\]\)\)",
            target["expr"],
        )
        options = panel["options"]
        assert options["calculate"] is False
        assert options["rowsFrame"]["layout"] == "le"
        assert options["yAxis"]["unit"] == panel["fieldConfig"]["defaults"]["unit"] == "s"


def test_nothing_grafanalib_writes_for_old_grafana_is_left(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    old_panel_keys = {
        "span", "height", "minSpan", "error", "cacheTimeout", "maxDataPoints", "thresholds",
        "cards", "dataFormat", "heatmap", "yBucketBound", "xAxis", "yAxis", "legend", "tooltip",
        "color", "hideZeroBuckets", "reverseYBuckets",
    }  # fmt: skip
    old_target_keys = {"intervalFactor", "step", "query", "target", "metric"}
    for dash in dashboards.values():
        for key in ("rows", "style", "hideControls", "sharedCrosshair", "gnetId"):
            assert key not in dash
        for panel in all_panels(dash):
            assert not old_panel_keys & set(panel), (panel["title"], old_panel_keys & set(panel))
            for target in panel.get("targets", []):
                assert not old_target_keys & set(target), panel["title"]
        for path, key, value in walk(dash):
            if key == "type":
                assert value not in ("graph", "singlestat"), path
            if key == "datasource":  # never a name such as "Prometheus", never null
                assert value == DS_REF, (path, value)
            if value is None:  # only a threshold base step is null (-Infinity)
                assert key == "value" and re.search(r"/thresholds/steps/0$", path), path


def test_timeseries_and_stats_have_current_options(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for dash in dashboards.values():
        for panel in all_panels(dash):
            steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {})
            if panel["type"] in ("timeseries", "stat", "heatmap"):
                assert steps["steps"][0] == {"color": "green", "value": None}
            if panel["type"] == "timeseries":
                assert panel["options"]["legend"]["showLegend"] is True
                assert panel["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "none"
            if panel["type"] == "stat":
                assert panel["fieldConfig"]["defaults"]["color"] == {"mode": "thresholds"}
                assert panel["options"]["reduceOptions"]["calcs"] == ["lastNotNull"]


def test_two_builds_are_identical() -> None:
    first, second = build_dashboards(), build_dashboards()
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_queries_name_only_wsops_metric_families(queries: list[PanelQuery]) -> None:
    assert queries
    for q in queries:
        names = metric_names(q.expr)
        assert names, q
        assert names <= KNOWN_METRICS, (q.panel, names - KNOWN_METRICS)


def test_metric_name_parser_sees_through_selectors_and_grouping() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (route, le) (rate(wsops_ping_rtt_seconds_bucket'
        '{job=~"$job", instance=~"a{b}"}[$__rate_interval]))) / on (job) bogus_metric'
    )
    assert metric_names(expr) == {"wsops_ping_rtt_seconds_bucket", "bogus_metric"}


def test_every_documented_family_is_charted(queries: list[PanelQuery]) -> None:
    charted = {name for q in queries for name in metric_names(q.expr)}
    histograms = {re.sub(r"_(bucket|sum|count)$", "", n) for n in charted}
    assert set(COUNTERS_AND_GAUGES) <= charted, set(COUNTERS_AND_GAUGES) - charted
    assert set(HISTOGRAMS) <= histograms, set(HISTOGRAMS) - histograms


def test_every_selector_is_scoped_to_job_and_instance(queries: list[PanelQuery]) -> None:
    for q in queries:
        selectors = re.findall(r"[A-Za-z_:][\w:]*(\{[^}]*\})", q.expr)
        assert selectors, q
        for selector in selectors:
            assert selector == '{job=~"$job", instance=~"$instance"}', q


def test_expressions_have_balanced_brackets(queries: list[PanelQuery]) -> None:
    pairs = {")": "(", "]": "[", "}": "{"}
    for q in queries:
        stack: list[str] = []
        for ch in re.sub(r'"[^"]*"', '""', q.expr):
            if ch in "([{":
                stack.append(ch)
            elif ch in pairs:
                assert stack and stack.pop() == pairs[ch], q
        assert not stack, q


def test_concrete_removes_every_grafana_variable(queries: list[PanelQuery]) -> None:
    for q in queries:
        expr = concrete(q.expr)
        assert "$" not in expr, expr
        assert 'job=~".+"' in expr and 'instance=~".+"' in expr
    expr = concrete(
        'rate(x{job=~"$job", instance=~"${instance}"}[$__rate_interval]) + y[$__interval]'
        " + z[$__range]",
        job="wsops-e2e", instance="127.0.0.1:9765",
    )
    assert expr == (
        'rate(x{job=~"wsops-e2e", instance=~"127.0.0.1:9765"}[1m]) + y[1m] + z[5m]'
    )


def test_concrete_refuses_an_unknown_variable() -> None:
    with pytest.raises(ValueError, match="datasource"):
        concrete("up{x=\"$datasource\"}")


def test_event_only_panels_say_so_in_their_description(
    dashboards: dict[str, dict[str, Any]], queries: list[PanelQuery],
) -> None:
    flagged = {(q.dashboard, q.panel) for q in queries if q.event_only}
    assert flagged == EXPECTED_EVENT_ONLY
    for dash in dashboards.values():
        for panel in all_panels(dash):
            marked = EVENT_ONLY_MARKER in panel.get("description", "")
            assert marked is ((dash["uid"], panel["title"]) in EXPECTED_EVENT_ONLY)


def test_a_fixed_job_selector_replaces_the_job_variable_in_queries() -> None:
    dashboards = build_dashboards('job="wsops-e2e"')
    for q in panel_queries(dashboards):
        assert "$job" not in q.expr
        assert '{job="wsops-e2e", instance=~"$instance"}' in q.expr
    for dash in dashboards.values():
        instance = dash["templating"]["list"][2]
        assert instance["definition"] == 'label_values(wsops_build_info{job="wsops-e2e"}, instance)'


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_prometheus_parses_every_concrete_query(
    queries: list[PanelQuery], tmp_path: Path,
) -> None:
    # Each query as a recording rule: `promtool check rules` parses every expression.
    rules = [
        {"record": f"wsops:dashboard_query:{i}", "expr": concrete(q.expr)}
        for i, q in enumerate(queries)
    ]
    path = tmp_path / "queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))  # YAML
    proc = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
