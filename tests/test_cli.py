"""The ``wsops`` command frame: help, version, and clear errors for bad settings."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from wsops import __version__
from wsops.cli import app

runner = CliRunner()


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_help_lists_command_groups() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "serve" in plain(result.output)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"wsops {__version__}"


def test_serve_help_documents_flags_env_and_an_example() -> None:
    wide = {"COLUMNS": "220", "TERMINAL_WIDTH": "220"}
    result = runner.invoke(app, ["serve", "--help"], env=wide)
    out = plain(result.output)
    assert result.exit_code == 0
    for flag in ("--host", "--port", "--admin-host", "--admin-port", "--allow-anonymous",
                 "--broker", "--jwt-secret", "--max-connections", "--drain-deadline"):
        assert flag in out
    assert "WSOPS_PORT" in out and "WSOPS_ALLOW_ANONYMOUS" in out
    assert "Example: wsops serve" in out


def test_serve_refuses_to_start_without_any_auth() -> None:
    result = runner.invoke(app, ["serve", "--port", "0", "--admin-port", "-1"])
    assert result.exit_code == 2
    assert "--allow-anonymous" in plain(result.output)


def test_serve_reports_bad_settings_clearly() -> None:
    result = runner.invoke(app, ["serve", "--allow-anonymous", "--heartbeat", "0"])
    assert result.exit_code == 2
    assert "heartbeat must be > 0" in plain(result.output)


def test_serve_reports_unknown_broker() -> None:
    result = runner.invoke(app, ["serve", "--allow-anonymous", "--broker", "kafka://x",
                                 "--port", "0", "--admin-port", "-1"])
    assert result.exit_code == 2
    assert "unknown broker" in plain(result.output)


def test_serve_env_vars_are_read(monkeypatch: object) -> None:
    result = runner.invoke(app, ["serve"], env={"WSOPS_ALLOW_ANONYMOUS": "1",
                                                "WSOPS_HEARTBEAT": "-1"})
    assert result.exit_code == 2
    assert "heartbeat must be > 0" in plain(result.output)
