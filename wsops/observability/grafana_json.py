"""Reshape grafanalib 0.7.1 output into dashboard JSON that Grafana 10 and 11 import as is.

grafanalib writes schema 12 dashboards with keys of the old row layout (``span``, ``height``,
``rows``), old Prometheus target fields (``intervalFactor: 2`` halves the resolution, ``step``),
``maxDataPoints: 100`` on every panel, datasources as names, and the pre-9 (Angular) heatmap.
These functions take the plain JSON it emits and return the current shape: datasource
references to the ``${datasource}`` variable, ``fieldConfig``/``options`` panels and the
Grafana 10 heatmap options. They are pure functions of their input, so output is deterministic.

Data source, for both ways a dashboard reaches Grafana: every panel and query reads the
``datasource`` variable, and only that variable's saved value names the ``DS_PROMETHEUS`` input
of ``__inputs``. Importing (Dashboards > New > Import, or ``POST /api/dashboards/import``) asks
for the input and writes the chosen data source's uid there, so the variable starts on it;
file provisioning ignores ``__inputs``, the unresolved value matches no data source, and the
variable falls back to a Prometheus data source of its own choosing, as one with no saved value
does (the example provisioning defines exactly one, uid ``prometheus``). The variable still
switches every panel after either.
"""

from __future__ import annotations

import json
from typing import Any

DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
"""Every panel, target and query variable points at the datasource template variable."""
DS_INPUT = "DS_PROMETHEUS"
DS_INPUT_REF = "${" + DS_INPUT + "}"

SCHEMA_VERSION = 39  # Grafana 10.4 and 11.x; 10.0-10.3 (38) load it without migrating
PLUGIN_VERSION = "10.4.0"  # panels already in 10.x shape: no plugin migration handler rewrites them

# Keys grafanalib writes for the row-based layout or Angular panels; Grafana 10/11 ignores them
# at best (``maxDataPoints: 100`` and ``intervalFactor: 2`` actively coarsen every query).
_OLD_DASHBOARD_KEYS = (
    "__inputs", "gnetId", "hideControls", "id", "rows", "sharedCrosshair", "style",
)  # fmt: skip
_OLD_PANEL_KEYS = (
    "cacheTimeout", "editable", "error", "height", "maxDataPoints", "maxPerRow", "minSpan",
    "repeat", "repeatDirection", "span", "thresholds",
)  # fmt: skip
_OLD_HEATMAP_KEYS = (
    "cards", "color", "dataFormat", "heatmap", "hideZeroBuckets", "highlightCards", "legend",
    "reverseYBuckets", "tooltip", "xAxis", "xBucketNumber", "xBucketSize", "yAxis",
    "yBucketBound", "yBucketNumber", "yBucketSize",
)  # fmt: skip
_OLD_TARGET_KEYS = ("hide", "intervalFactor", "metric", "query", "step", "target")
_OLD_VARIABLE_KEYS = ("auto", "auto_count", "auto_min", "tagValuesQuery", "tagsQuery", "useTags")
_BASE_STEP: dict[str, Any] = {"color": "green", "value": None}  # value null = -Infinity
# The old heatmap's bucket bound names, as Grafana 10's own migration maps them.
_ROW_LAYOUT = {"upper": "le", "lower": "ge", "middle": "unknown", "auto": "auto"}
_VARIABLE_QUERY_REF = "PrometheusVariableQueryEditor-VariableQuery"


def to_plain(obj: Any) -> dict[str, Any]:
    """A grafanalib object (anything with ``to_json_data``) as plain JSON types."""
    text = json.dumps(obj, default=lambda o: o.to_json_data())
    plain: dict[str, Any] = json.loads(text)
    return plain


def drop_none(value: Any) -> Any:
    """``value`` without ``None`` dict entries, recursively (grafanalib writes many ``null``s)."""
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value


def _without_none(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = drop_none(obj)
    return out


def modernize_dashboard(raw: dict[str, Any]) -> dict[str, Any]:
    """A grafanalib dashboard (plain JSON) in Grafana 10/11 shape."""
    dash = _without_none(raw)
    for key in _OLD_DASHBOARD_KEYS:
        dash.pop(key, None)
    dash["schemaVersion"] = SCHEMA_VERSION
    dash["panels"] = [modernize_panel(p) for p in dash.get("panels", [])]
    dash["templating"] = {"list": [modernize_variable(v) for v in dash["templating"]["list"]]}
    picker = dash.get("timepicker", {})
    dash["timepicker"] = {"refresh_intervals": picker.get("refresh_intervals", [])}
    dash.setdefault("fiscalYearStartMonth", 0)
    dash.setdefault("liveNow", False)
    dash.setdefault("weekStart", "")
    return dash


def modernize_panel(raw: dict[str, Any]) -> dict[str, Any]:
    """One panel: datasource reference, no layout leftovers, current options per type."""
    steps = raw.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps")
    panel = _without_none(raw)
    for key in _OLD_PANEL_KEYS:
        panel.pop(key, None)
    kind = panel["type"]
    if kind == "row":
        panel.pop("fieldConfig", None)
        panel.pop("targets", None)
        panel.pop("transformations", None)
        panel.pop("links", None)
        panel["panels"] = [modernize_panel(p) for p in panel.get("panels", [])]
        panel["datasource"] = dict(DATASOURCE)
        return panel
    panel["datasource"] = dict(DATASOURCE)
    panel["pluginVersion"] = PLUGIN_VERSION
    panel["targets"] = [modernize_target(t) for t in panel.get("targets", [])]
    defaults = panel.setdefault("fieldConfig", {}).setdefault("defaults", {})
    panel["fieldConfig"].setdefault("overrides", [])
    defaults["thresholds"] = {"mode": "absolute", "steps": _threshold_steps(steps)}
    if kind == "timeseries":
        panel["options"]["legend"]["showLegend"] = True
    elif kind == "stat":
        defaults["color"] = {"mode": "thresholds"}
        defaults.pop("noValue", None)  # grafanalib's "none" would print the word "none"
        panel["options"].setdefault("wideLayout", True)
    elif kind == "heatmap":
        _modernize_heatmap(panel)
    return panel


def _threshold_steps(steps: Any) -> list[dict[str, Any]]:
    """Steps with a base step first (grafanalib's Stat writes ``""``, TimeSeries ``[]``)."""
    if not isinstance(steps, list) or not steps:
        return [dict(_BASE_STEP)]
    out = [dict(s) for s in steps]
    out[0]["value"] = None
    return out


def _modernize_heatmap(panel: dict[str, Any]) -> None:
    """Angular heatmap fields -> Grafana 10 heatmap ``options`` (pre-bucketed data, no calc)."""
    y_axis = panel.get("yAxis", {})
    color = panel.get("color", {})
    unit = y_axis.get("format") or "short"
    scheme = str(color.get("colorScheme", "interpolateOranges")).removeprefix("interpolate")
    panel["options"] = {
        # tsbuckets: Prometheus already bucketed the data (format "heatmap" de-accumulates le).
        "calculate": panel.get("dataFormat") != "tsbuckets",
        "cellGap": 1,
        "color": {
            "exponent": color.get("exponent", 0.5),
            "fill": "dark-orange",
            "mode": "scheme",
            "reverse": False,
            "scale": "exponential",
            "scheme": scheme,
            "steps": 64,
        },
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
        # hideZeroBuckets: cells at (about) zero are left transparent.
        "filterValues": {"le": 1e-9} if panel.get("hideZeroBuckets") else {},
        "legend": {"show": bool(panel.get("legend", {}).get("show", True))},
        "rowsFrame": {"layout": _ROW_LAYOUT.get(panel.get("yBucketBound") or "auto", "auto")},
        "showValue": "never",
        "tooltip": {"mode": "single", "show": True, "showColorScale": False, "yHistogram": True},
        "yAxis": {"axisPlacement": "left", "reverse": False, "unit": unit},
    }
    for key in _OLD_HEATMAP_KEYS:
        panel.pop(key, None)
    defaults = panel["fieldConfig"]["defaults"]
    # The heatmap panel disables the standard options (unit included) and takes the y unit from
    # options.yAxis; the same unit is kept here so every panel states one.
    defaults["unit"] = unit
    defaults["custom"] = {
        "hideFrom": {"legend": False, "tooltip": False, "viz": False},
        "scaleDistribution": {"type": "linear"},
    }


def modernize_target(raw: dict[str, Any]) -> dict[str, Any]:
    """A Prometheus target as Grafana 10's query editor saves it (code mode, range query)."""
    target = _without_none(raw)
    for key in _OLD_TARGET_KEYS:
        target.pop(key, None)
    if not target.get("interval"):
        target.pop("interval", None)
    target["datasource"] = dict(DATASOURCE)
    target["editorMode"] = "code"
    target["range"] = not target.get("instant", False)
    return target


def modernize_variable(raw: dict[str, Any]) -> dict[str, Any]:
    """A template variable: datasource refs and the Prometheus variable query object."""
    var = _without_none(raw)
    for key in _OLD_VARIABLE_KEYS:
        var.pop(key, None)
    var.setdefault("skipUrlSync", False)
    var.setdefault("regex", "")
    if var["type"] == "datasource":
        var.pop("datasource", None)
        # The import input's value (a uid) on import; matches nothing when provisioned.
        var["current"] = {"selected": False, "text": DS_INPUT_REF, "value": DS_INPUT_REF}
        return var
    if var["type"] == "query":
        query = var["query"]
        var["datasource"] = dict(DATASOURCE)
        var["definition"] = query
        var["query"] = {"query": query, "refId": _VARIABLE_QUERY_REF}
        if var.get("includeAll"):  # start on "All" (a list when several may be selected)
            text, value = ("All", "$__all")
            var["current"] = (
                {"selected": True, "text": [text], "value": [value]}
                if var.get("multi")
                else {"selected": True, "text": text, "value": value}
            )
        else:
            var["current"] = {}
    return var


_PANEL_NAMES = {"heatmap": "Heatmap", "stat": "Stat", "timeseries": "Time series"}


def importable(dash: dict[str, Any]) -> dict[str, Any]:
    """``dash`` with ``__inputs`` (the Prometheus data source the import dialog asks for) and
    ``__requires`` (Grafana and the plugins it uses), as Grafana's "export for sharing
    externally" writes them."""
    kinds = sorted({p["type"] for p in _all_panels(dash["panels"])} - {"row"})
    requires = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": PLUGIN_VERSION},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        *({"type": "panel", "id": kind, "name": _PANEL_NAMES.get(kind, kind), "version": ""}
          for kind in kinds),
    ]
    inputs = [{
        "name": DS_INPUT, "label": "Prometheus", "description": "Where the wsops nodes' "
        "metrics are", "type": "datasource", "pluginId": "prometheus",
        "pluginName": "Prometheus",
    }]
    return {"__inputs": inputs, "__requires": requires, **dash}


def _all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [q for p in panels for q in (p, *_all_panels(p.get("panels", [])))]
