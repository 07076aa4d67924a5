"""The alert rules pass ``promtool check rules`` and ``promtool test rules``: every alert fires
on series made for it and stays silent on normal ones."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.observability.alert_cases import CASES
from wsops.observability.alerts import ALERTS, AlertOptions, prometheus_rules

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")
# Skipped on a laptop without promtool; never in CI, where scripts/test.sh installs it.
pytestmark = pytest.mark.skipif(PROMTOOL is None and not os.environ.get("CI"),
                                reason="promtool missing (apt-get install prometheus)")


def _expand(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def _test_file(rules_path: Path) -> dict[str, object]:
    rules = {r["alert"]: r for r in prometheus_rules(AlertOptions())["groups"][0]["rules"]}
    tests = []
    for name, case in CASES.items():
        rule = rules[name]
        annotations = {k: _expand(v, case.labels) for k, v in rule["annotations"].items()}
        for series, expected in ((case.fire, True), (case.quiet, False)):
            exp = [{"exp_labels": {**case.labels, "severity": rule["labels"]["severity"]},
                    "exp_annotations": annotations}] if expected else []
            tests.append({
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": [{"eval_time": case.eval_time, "alertname": name,
                                     "exp_alerts": exp}],
            })
    return {"rule_files": [str(rules_path)], "evaluation_interval": "1m", "tests": tests}


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    assert set(CASES) == {a.name for a in ALERTS}


def test_alert_specs_follow_the_conventions() -> None:
    for a in ALERTS:
        assert re.fullmatch(r"Wsops[A-Z][A-Za-z]+", a.name)
        assert a.severity in {"critical", "warning", "info"}
    for rule in prometheus_rules(AlertOptions())["groups"][0]["rules"]:
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url",
                                            "dashboard_url"}


def test_promtool_checks_and_unit_tests_the_rules(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(prometheus_rules(AlertOptions()), sort_keys=False))
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{len(ALERTS)} rules found" in check.stdout
    test = tmp_path / "alerts_test.yml"
    test.write_text(yaml.safe_dump(_test_file(rules), sort_keys=False))
    run = subprocess.run([PROMTOOL, "test", "rules", str(test)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_promtool_test_fails_when_an_alert_is_broken(tmp_path: Path) -> None:
    """The unit tests can fail: a rule with a wrong threshold is caught."""
    assert PROMTOOL is not None
    data = prometheus_rules(AlertOptions())
    for rule in data["groups"][0]["rules"]:
        if rule["alert"] == "WsopsNearFdLimit":
            rule["expr"] = rule["expr"].replace("> 0.9", "> 0.99")
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(data, sort_keys=False))
    test = tmp_path / "alerts_test.yml"
    test.write_text(yaml.safe_dump(_test_file(rules), sort_keys=False))
    run = subprocess.run([PROMTOOL, "test", "rules", str(test)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0 and "WsopsNearFdLimit" in run.stdout + run.stderr
