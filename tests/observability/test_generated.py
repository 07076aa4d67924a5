"""What is committed under dashboards/ and runbooks/ matches the one source in
wsops/observability/."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from wsops.cli import app
from wsops.observability.alerts import ALERTS, AlertOptions, prometheus_rules
from wsops.observability.build import build_all

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ["Meaning", "Impact", "Diagnosis", "Mitigation"]


def test_committed_dashboards_equal_a_fresh_build() -> None:
    files = build_all(AlertOptions())
    stale = [name for name, text in files.items()
             if not (ROOT / "dashboards" / name).is_file()
             or (ROOT / "dashboards" / name).read_text() != text]
    assert not stale, f"run `wsops dashboards build`: stale {stale}"


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


def test_every_alert_has_a_runbook_and_every_runbook_an_alert() -> None:
    names = {a.name for a in ALERTS}
    books = {p.stem for p in (ROOT / "runbooks").glob("*.md") if p.name != "README.md"}
    assert books == names
    for rule in prometheus_rules(AlertOptions())["groups"][0]["rules"]:
        url = rule["annotations"]["runbook_url"]
        assert (ROOT / url).is_file(), url


def test_runbooks_have_the_sections_and_ready_queries() -> None:
    for a in ALERTS:
        text = (ROOT / "runbooks" / f"{a.name}.md").read_text()
        headings = re.findall(r"^## (\w+)", text, re.M)
        assert headings == SECTIONS, (a.name, headings)
        assert text.startswith(f"# {a.name}")
        diagnosis = text.split("## Diagnosis")[1].split("## Mitigation")[0]
        assert "```promql" in diagnosis and "wsops_" in diagnosis, a.name
