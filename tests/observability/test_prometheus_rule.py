"""The committed PrometheusRule manifest: a Kubernetes object in the shape prometheus-operator's
CRD (monitoring.coreos.com/v1) accepts, holding exactly the plain rule file's groups."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from wsops.observability.alerts import AlertOptions, prometheus_rule, prometheus_rules
from wsops.observability.build import PROMETHEUS_RULE_FILE, RULES_FILE

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")
# The CRD's duration pattern (a Prometheus duration such as 1h30m, or 0).
DURATION = re.compile(r"0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
GROUP_KEYS = {"name", "interval", "labels", "limit", "partial_response_strategy", "query_offset",
              "rules"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def schema_errors(doc: Any) -> list[str]:
    """Where ``doc`` departs from a PrometheusRule as the v1 CRD's schema and Kubernetes
    object metadata define it (the fields wsops could get wrong)."""
    errors: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            errors.append(what)

    need(isinstance(doc, dict), "not a mapping")
    if errors:
        return errors
    need(doc.get("apiVersion") == "monitoring.coreos.com/v1", "apiVersion")
    need(doc.get("kind") == "PrometheusRule", "kind")
    need(set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, f"top-level keys {set(doc)}")
    meta = doc.get("metadata")
    need(isinstance(meta, dict), "metadata")
    if isinstance(meta, dict):
        name = meta.get("name")
        need(isinstance(name, str) and len(name) <= 253
             and bool(DNS_SUBDOMAIN.fullmatch(name)), f"metadata.name {name!r}")
        labels = meta.get("labels", {})
        need(_string_map(labels), "metadata.labels: strings only")
        for key, value in labels.items() if isinstance(labels, dict) else ():
            need(bool(LABEL_KEY.fullmatch(str(key))), f"label key {key!r}")
            need(bool(LABEL_VALUE.fullmatch(str(value))) and len(str(value)) <= 63,
                 f"label value {value!r}")
    spec = doc.get("spec")
    need(isinstance(spec, dict) and set(spec) == {"groups"}, "spec: groups only")
    groups = spec.get("groups") if isinstance(spec, dict) else None
    need(isinstance(groups, list) and bool(groups), "spec.groups: a non-empty list")
    names = [g.get("name") for g in groups or [] if isinstance(g, dict)]
    need(len(names) == len(set(names)), "group names unique (a list map keyed by name)")
    for i, group in enumerate(groups or []):
        where = f"spec.groups[{i}]"
        need(isinstance(group, dict) and set(group) <= GROUP_KEYS, f"{where} keys")
        if not isinstance(group, dict):
            continue
        need(isinstance(group.get("name"), str) and bool(group["name"]), f"{where}.name")
        if "interval" in group:
            need(bool(DURATION.fullmatch(str(group["interval"]))), f"{where}.interval")
        need(isinstance(group.get("rules"), list), f"{where}.rules")
        for j, rule in enumerate(group.get("rules") or []):
            at = f"{where}.rules[{j}]"
            need(isinstance(rule, dict) and set(rule) <= RULE_KEYS, f"{at} keys")
            if not isinstance(rule, dict):
                continue
            need(("alert" in rule) != ("record" in rule), f"{at}: alert or record")
            need(isinstance(rule.get("expr"), str | int), f"{at}.expr")
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    need(bool(DURATION.fullmatch(str(rule[key]))), f"{at}.{key}")
            for key in ("labels", "annotations"):
                if key in rule:
                    need(_string_map(rule[key]), f"{at}.{key}: strings only")
    return errors


def test_the_committed_manifest_is_a_valid_prometheus_rule() -> None:
    text = (ROOT / "dashboards" / PROMETHEUS_RULE_FILE).read_text()
    docs = list(yaml.safe_load_all(text))
    assert len(docs) == 1
    assert schema_errors(docs[0]) == []


def test_its_groups_are_the_rule_files_groups() -> None:
    manifest = yaml.safe_load((ROOT / "dashboards" / PROMETHEUS_RULE_FILE).read_text())
    rules = yaml.safe_load((ROOT / "dashboards" / RULES_FILE).read_text())
    assert manifest["spec"]["groups"] == rules["groups"]
    opts = AlertOptions(cluster_label="cluster", rule_labels=(("release", "prom"),))
    assert prometheus_rule(opts)["spec"] == prometheus_rules(opts)
    assert schema_errors(prometheus_rule(opts)) == []


def test_the_schema_check_catches_what_the_crd_refuses() -> None:
    """The check can fail: each of these breaks the CRD or object metadata."""
    good = prometheus_rule(AlertOptions())
    rule = good["spec"]["groups"][0]["rules"][0]
    bad_docs = [
        {**good, "apiVersion": "monitoring.coreos.com/v1beta1"},
        {**good, "metadata": {"name": "Wsops_Alerts"}},
        {**good, "metadata": {"name": "wsops", "labels": {"release": 1}}},
        {**good, "spec": {"groups": [{"rules": [rule]}]}},
        {**good, "spec": {"groups": [{"name": "a", "rules": [{**rule, "for": "2 minutes"}]}]}},
        {**good, "spec": {"groups": [{"name": "a", "rules": [{**rule, "severity": "x"}]}]}},
        {**good, "spec": {"groups": [{"name": "a", "rules": [
            {**rule, "labels": {"severity": None}}]}]}},
        {**good, "spec": {"groups": [{"name": "a", "rules": []}, {"name": "a", "rules": []}]}},
    ]
    for doc in bad_docs:
        assert schema_errors(doc), doc


@pytest.mark.skipif(KUBECTL is None and not os.environ.get("CI"),
                    reason="kubectl missing (it ships kustomize)")
def test_kustomize_takes_the_manifest(tmp_path: Path) -> None:
    """``kubectl kustomize`` reads it as a Kubernetes resource and sets a namespace on it."""
    assert KUBECTL is not None
    shutil.copy(ROOT / "dashboards" / PROMETHEUS_RULE_FILE, tmp_path / PROMETHEUS_RULE_FILE)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": "monitoring", "resources": [PROMETHEUS_RULE_FILE],
    }))
    run = subprocess.run([KUBECTL, "kustomize", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    (out,) = list(yaml.safe_load_all(run.stdout))
    assert out["metadata"]["namespace"] == "monitoring"
    assert schema_errors(out) == []
    assert out["spec"] == yaml.safe_load(
        (ROOT / "dashboards" / PROMETHEUS_RULE_FILE).read_text())["spec"]
