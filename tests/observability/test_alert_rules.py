"""The alert rules pass ``promtool check rules`` and ``promtool test rules``: every alert fires
on series made for it and stays silent on normal ones, with a cluster label too; their links are
absolute and name only labels the alert's series carry."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.observability.alert_cases import CASES
from wsops.observability.alerts import ALERTS, AlertOptions, is_absolute_url, prometheus_rules

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")
# Skipped on a laptop without promtool; never in CI, where scripts/test.sh installs it.
needs_promtool = pytest.mark.skipif(PROMTOOL is None and not os.environ.get("CI"),
                                    reason="promtool missing (apt-get install prometheus)")
LABEL_REF = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def _expand(template: str, labels: dict[str, str]) -> str:
    return LABEL_REF.sub(lambda m: labels.get(m.group(1), ""), template)


def _with_label(series: str, name: str, value: str) -> str:
    """A promtool series ``metric{...}`` with one more label."""
    metric, brace, rest = series.partition("{")
    return f'{metric}{{{name}="{value}"' + (f",{rest}" if brace and rest != "}" else "}")


def _test_file(rules_path: Path, opts: AlertOptions, extra: dict[str, str] | None = None,
               ) -> dict[str, object]:
    """The promtool unit tests of every case; ``extra`` labels go on every input series and
    are expected on every alert."""
    extra = extra or {}
    rules = {r["alert"]: r for r in prometheus_rules(opts)["groups"][0]["rules"]}
    tests = []
    for name, case in CASES.items():
        rule = rules[name]
        for scenario in case.scenarios():
            series = dict(scenario.series)
            for label, value in extra.items():
                series = {_with_label(s, label, value): v for s, v in series.items()}
            exp = []
            if scenario.fires_with is not None:
                labels = {**extra, **scenario.fires_with}
                exp = [{"exp_labels": {**labels, "severity": rule["labels"]["severity"]},
                        "exp_annotations": {k: _expand(v, labels)
                                            for k, v in rule["annotations"].items()}}]
            tests.append({
                "name": f"{name}: {scenario.why}",
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": [{"eval_time": scenario.eval_time, "alertname": name,
                                     "exp_alerts": exp}],
            })
    return {"rule_files": [str(rules_path)], "evaluation_interval": "1m", "tests": tests}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def _check_and_test(tmp_path: Path, opts: AlertOptions,
                    extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(prometheus_rules(opts), sort_keys=False))
    check = _promtool("check", "rules", str(rules))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{len(ALERTS)} rules found" in check.stdout
    test = tmp_path / "alerts_test.yml"
    test.write_text(yaml.safe_dump(_test_file(rules, opts, extra), sort_keys=False))
    return _promtool("test", "rules", str(test))


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    assert set(CASES) == {a.name for a in ALERTS}


def test_alert_specs_follow_the_conventions() -> None:
    for a in ALERTS:
        assert re.fullmatch(r"Wsops[A-Z][A-Za-z]+", a.name)
        assert a.severity in {"critical", "warning", "info"}
        assert a.scope in {"fleet", "node"}
    for rule in prometheus_rules(AlertOptions())["groups"][0]["rules"]:
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url",
                                            "dashboard_url"}


def test_annotations_name_only_labels_the_alert_carries() -> None:
    """A fleet-wide alert (``sum by (job)``) has no instance: no annotation may use one. The
    cases' labels are what promtool proves the alert carries."""
    for rule in prometheus_rules(AlertOptions())["groups"][0]["rules"]:
        labels = set(CASES[rule["alert"]].labels)
        for key, text in rule["annotations"].items():
            used = set(LABEL_REF.findall(text))
            assert used <= labels, (rule["alert"], key, used - labels)
    burn = [r for r in prometheus_rules(AlertOptions())["groups"][0]["rules"]
            if "Burn" in r["alert"]]
    assert burn and all("var-job={{ $labels.job }}" in r["annotations"]["dashboard_url"]
                        and "instance" not in r["annotations"]["dashboard_url"] for r in burn)


def test_links_are_absolute_and_follow_the_base_urls() -> None:
    for rule in prometheus_rules(AlertOptions())["groups"][0]["rules"]:
        for key in ("runbook_url", "dashboard_url"):
            assert is_absolute_url(rule["annotations"][key]), (rule["alert"], key)
    opts = AlertOptions(runbook_base_url="https://git.example.com/ops/wsops/-/blob/v2/runbooks",
                        grafana_base_url="https://grafana.example.com/sub/",
                        cluster_label="k8s_cluster")
    for a, rule in zip(ALERTS, prometheus_rules(opts)["groups"][0]["rules"], strict=True):
        ann = rule["annotations"]
        assert ann["runbook_url"] == (
            f"https://git.example.com/ops/wsops/-/blob/v2/runbooks/{a.name}.md")
        assert ann["dashboard_url"].startswith(
            f"https://grafana.example.com/sub/d/{a.dashboard}?"
            "var-cluster={{ $labels.k8s_cluster }}&var-job={{ $labels.job }}")
    for bad in ("runbooks/", "/d/", "grafana.example.com", "ftp://x/"):
        with pytest.raises(ValueError, match="absolute"):
            AlertOptions(runbook_base_url=bad)
        with pytest.raises(ValueError, match="absolute"):
            AlertOptions(grafana_base_url=bad)
    with pytest.raises(ValueError, match="label name"):
        AlertOptions(cluster_label="k8s-cluster")


def test_a_cluster_label_is_kept_by_every_aggregation() -> None:
    plain = prometheus_rules(AlertOptions())["groups"][0]["rules"]
    clustered = prometheus_rules(AlertOptions(cluster_label="cluster"))["groups"][0]["rules"]
    for before, after in zip(plain, clustered, strict=True):
        for grouping in re.findall(r"\b(?:by|on) \(([^)]*)\)", after["expr"]):
            assert grouping.startswith("cluster, job"), (after["alert"], grouping)
        assert after["expr"].replace("cluster, ", "") == before["expr"]


@needs_promtool
def test_promtool_checks_and_unit_tests_the_rules(tmp_path: Path) -> None:
    run = _check_and_test(tmp_path, AlertOptions())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


@needs_promtool
def test_promtool_unit_tests_the_rules_with_a_cluster_label(tmp_path: Path) -> None:
    """Every alert, built with --cluster-label cluster, keeps the series' cluster label."""
    run = _check_and_test(tmp_path, AlertOptions(cluster_label="cluster"), {"cluster": "eu-1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


@needs_promtool
@pytest.mark.parametrize(("alert", "old", "new"), [
    ("WsopsNearFdLimit", "> 0.9", "> 0.99"),
    ("WsopsCpuSaturated", "> 0.9", "> 0.99"),
    ("WsopsCpuSaturated", "rate(process_cpu_seconds_total{job=\"wsops\"}[5m])",
     "sum by (job, instance) (rate(process_cpu_seconds_total{job=\"wsops\"}[5m]))"),
    ("WsopsResumeFailures", "> 10", "> 0"),
    ("WsopsResumeFailures", "by (job)", "by (job, instance)"),
    ("WsopsNearConnectionCapacity", "instance, worker", "instance"),
])
def test_promtool_test_fails_when_an_alert_is_broken(
    tmp_path: Path, alert: str, old: str, new: str,
) -> None:
    """The unit tests can fail: a wrong threshold, a summed node instead of its processes, a
    missing minimum volume or a per-node resume alert are each caught."""
    data = prometheus_rules(AlertOptions())
    (rule,) = [r for r in data["groups"][0]["rules"] if r["alert"] == alert]
    assert old in rule["expr"]
    rule["expr"] = rule["expr"].replace(old, new)
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(data, sort_keys=False))
    test = tmp_path / "alerts_test.yml"
    test.write_text(yaml.safe_dump(_test_file(rules, AlertOptions()), sort_keys=False))
    run = _promtool("test", "rules", str(test))
    assert run.returncode != 0 and alert in run.stdout + run.stderr
