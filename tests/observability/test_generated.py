"""What is committed under dashboards/ and runbooks/ matches the one source in
wsops/observability/."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from wsops.cli import app
from wsops.observability import alerts
from wsops.observability.alerts import ALERTS, AlertOptions, prometheus_rules
from wsops.observability.build import PROMETHEUS_RULE_FILE, RULES_FILE, build_all
from wsops.ops import dashboards as command

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ["Meaning", "Impact", "Diagnosis", "Mitigation"]


def test_committed_dashboards_equal_a_fresh_build() -> None:
    files = build_all(AlertOptions())
    assert {RULES_FILE, PROMETHEUS_RULE_FILE, "wsops-node.json"} <= set(files)
    stale = [name for name, text in files.items()
             if not (ROOT / "dashboards" / name).is_file()
             or (ROOT / "dashboards" / name).read_text() != text]
    assert not stale, f"run `wsops dashboards build`: stale {stale}"
    committed = {str(p.relative_to(ROOT / "dashboards"))
                 for p in (ROOT / "dashboards").rglob("*") if p.is_file()}
    assert committed == set(files), committed ^ set(files)


def test_build_check_mode_reports_drift(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["dashboards", "build", "--out", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["dashboards", "build", "--out", str(tmp_path),
                               "--check"]).exit_code == 0
    rules = tmp_path / "wsops-alerts.rules.yml"
    rules.write_text(rules.read_text().replace("0.9", "0.8"))
    result = runner.invoke(app, ["dashboards", "build", "--out", str(tmp_path), "--check"])
    assert result.exit_code == 1 and "wsops-alerts.rules.yml" in result.output
    bad = runner.invoke(app, ["dashboards", "build", "--out", str(tmp_path),
                              "--job-selector", "job=wsops"])
    assert bad.exit_code == 2
    for option, value in (("--runbook-base-url", "runbooks/"), ("--grafana-base-url", "/d"),
                          ("--cluster-label", "k8s-cluster"), ("--rule-label", "release")):
        bad = runner.invoke(app, ["dashboards", "build", "--out", str(tmp_path), option, value])
        assert bad.exit_code == 2, (option, bad.output)


def test_build_options_reach_every_artifact(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, [
        "dashboards", "build", "--out", str(tmp_path),
        "--runbook-base-url", "https://git.example.com/ops/wsops/blob/main/runbooks/",
        "--grafana-base-url", "https://grafana.example.com", "--cluster-label", "cluster",
        "--rule-label", "release=kube-prometheus-stack", "--rule-label", "team=realtime"])
    assert result.exit_code == 0, result.output
    assert "placeholder" not in result.output
    rule = yaml.safe_load((tmp_path / PROMETHEUS_RULE_FILE).read_text())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["team"] == "realtime"
    (node_down,) = [r for r in rule["spec"]["groups"][0]["rules"] if r["alert"] == "WsopsNodeDown"]
    assert node_down["annotations"]["runbook_url"] == (
        "https://git.example.com/ops/wsops/blob/main/runbooks/WsopsNodeDown.md")
    assert node_down["annotations"]["dashboard_url"].startswith(
        "https://grafana.example.com/d/wsops-fleet?var-cluster={{ $labels.cluster }}")
    grafana = yaml.safe_load((tmp_path / "provisioning/alerting/wsops-alerts.yml").read_text())
    assert all(r["annotations"]["runbook_url"].startswith("https://git.example.com/")
               for r in grafana["groups"][0]["rules"])
    fleet = json.loads((tmp_path / "wsops-fleet.json").read_text())
    assert [v["name"] for v in fleet["templating"]["list"]] == [
        "datasource", "cluster", "job", "instance"]


def test_the_default_runbook_base_is_the_repository_or_a_loud_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The command shows the defaults in --help without importing grafanalib: kept equal.
    assert command.PLACEHOLDER == alerts.PLACEHOLDER_RUNBOOK_BASE_URL
    assert command.DEFAULT_GRAFANA == alerts.DEFAULT_GRAFANA_URL
    declared = alerts.default_runbook_base_url()
    result = CliRunner().invoke(app, ["dashboards", "build", "--out", str(tmp_path)])
    assert result.exit_code == 0
    assert ("placeholder" in result.output) is (declared == alerts.PLACEHOLDER_RUNBOOK_BASE_URL)

    class Metadata:
        def __init__(self, urls: list[str]) -> None:
            self.urls = urls

        def get_all(self, name: str) -> list[str]:
            assert name == "Project-URL"
            return self.urls

    monkeypatch.setattr(importlib.metadata, "metadata", lambda name: Metadata(
        ["Documentation, https://docs.example.com", "Repository, https://git.example.com/wsops/"]))
    assert alerts.default_runbook_base_url() == "https://git.example.com/wsops/blob/main/runbooks/"
    assert AlertOptions().runbook_base_url == "https://git.example.com/wsops/blob/main/runbooks/"
    monkeypatch.setattr(importlib.metadata, "metadata",
                        lambda name: Metadata(["Homepage, https://wsops.example.org"]))
    assert alerts.default_runbook_base_url() == alerts.PLACEHOLDER_RUNBOOK_BASE_URL


def test_every_alert_has_a_runbook_and_every_runbook_an_alert() -> None:
    names = {a.name for a in ALERTS}
    books = {p.stem for p in (ROOT / "runbooks").glob("*.md") if p.name != "README.md"}
    assert books == names
    opts = AlertOptions()
    for rule in prometheus_rules(opts)["groups"][0]["rules"]:
        url = rule["annotations"]["runbook_url"]
        page = url.removeprefix(opts.runbook_base_url.rstrip("/") + "/")
        assert page == f"{rule['alert']}.md" and (ROOT / "runbooks" / page).is_file(), url


def test_runbooks_name_no_retired_metric() -> None:
    """The wsops_process_* names are gone (the node exports the standard process_* ones)."""
    for page in (ROOT / "runbooks").glob("*.md"):
        assert "wsops_process_" not in page.read_text(), page.name


def test_runbooks_have_the_sections_and_ready_queries() -> None:
    for a in ALERTS:
        text = (ROOT / "runbooks" / f"{a.name}.md").read_text()
        headings = re.findall(r"^## (\w+)", text, re.M)
        assert headings == SECTIONS, (a.name, headings)
        assert text.startswith(f"# {a.name}\n\n**Severity: {a.severity}** · for {a.for_} · "
                               f"dashboard `{a.dashboard}`")
        diagnosis = text.split("## Diagnosis")[1].split("## Mitigation")[0]
        assert "```promql" in diagnosis and "wsops_" in diagnosis, a.name


def test_each_runbook_shows_its_alert_expression() -> None:
    """The page's first PromQL block is the rule as generated (line breaks aside)."""

    def flat(expr: str) -> str:
        return re.sub(r"\s+", " ", expr).replace("( ", "(").replace(" )", ")").strip()

    for rule in prometheus_rules(AlertOptions())["groups"][0]["rules"]:
        text = (ROOT / "runbooks" / f"{rule['alert']}.md").read_text()
        shown = text.split("```promql\n", 1)[1].split("```", 1)[0]
        assert flat(shown) == flat(rule["expr"]), rule["alert"]
