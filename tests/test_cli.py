"""The ``wsops`` command frame: help, version, and clear errors for bad settings."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from wsops import __version__
from wsops.cli import app, reflow
from wsops.config import knobs
from wsops.ops.serve import PANELS, SWITCHES, panel_of

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


def test_serve_help_is_whole_at_80_columns() -> None:
    """Every flag, its --no- form and its variable in full, nothing cut with an ellipsis."""
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "80"})
    out = plain(result.output)
    assert result.exit_code == 0
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    for k in knobs():
        assert re.search(rf"(^|\s){re.escape(k.flag)}\s", out), k.flag
        if k.cli_type is bool:
            assert re.search(rf"\s--no-{re.escape(k.flag[2:])}\s", out), k.flag
        assert re.search(rf"\s{k.env}\]", out), k.env
    assert "--uvloop" in out and "--no-uvloop" in out and "--no-no-uvloop" not in out
    panels = re.findall(r"╭─ (.+?) ─", out)
    assert panels == ["Options", *PANELS, SWITCHES]


def _commands(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [(*prefix, info.name) for info in group.registered_commands if info.name]
    for sub in group.registered_groups:
        if sub.typer_instance is not None and sub.name:
            out += [(*prefix, sub.name)]
            out += _commands(sub.typer_instance, (*prefix, sub.name))
    return out


def test_every_commands_help_reads_as_paragraphs_at_80_columns() -> None:
    """No description line is broken where the docstring's was: each paragraph is wrapped
    at the terminal's width (a line is followed by an empty one, or the next word would not
    have fitted on it)."""
    commands = _commands(app)
    assert ("rollout",) in commands and ("loadtest", "fanout") in commands
    for command in commands:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, command
        lines = plain(result.output).splitlines()
        described = lines[:next(i for i, ln in enumerate(lines) if ln.startswith("╭"))]
        for line, after in itertools.pairwise(described):
            word = after.split()[0] if after.strip() else ""
            if word and line.strip() and len(line.rstrip()) + 1 + len(word) < 80:
                raise AssertionError(f"wsops {' '.join(command)} --help: {line!r} {after!r}")


def test_reflow_keeps_lists_and_marked_paragraphs() -> None:
    doc = """First line
    goes on.

    A paragraph
    on two lines.

    - a list
    - stays

    \b
    kept
    as is"""
    assert reflow(doc) == ("First line goes on.\n\nA paragraph on two lines.\n\n- a list\n"
                           "- stays\n\n\b\nkept\nas is")


def test_every_panel_names_knobs_and_switches_are_on_off_pairs() -> None:
    names = {k.name for k in knobs()}
    listed = [n for members in PANELS.values() for n in members]
    assert set(listed) <= names and len(listed) == len(set(listed))
    for k in knobs():
        assert (panel_of(k) == SWITCHES) == (k.cli_type is bool), k.name


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


def test_check_config_prints_what_would_run_and_starts_nothing() -> None:
    import socket

    with socket.socket() as s:  # a port someone listens on: --check-config must not bind it
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = runner.invoke(app, [
            "serve", "--check-config", "--jwt-secret", "s3cret", "--port", str(port),
            "--broker", "redis+sentinel://u:hunter2@10.9.9.9:26379/main?prefix=app",
            "--broker-ack", "replica"], env={"WSOPS_ALLOW_ANONYMOUS": "1"})
    out = plain(result.output)
    assert result.exit_code == 0, out
    assert f"listen: ws://127.0.0.1:{port}/ws" in out
    assert "broker: redis+sentinel://10.9.9.9:26379/main (acks: replica)" in out
    assert "auth: HS256, anonymous" in out
    assert "hunter2" not in out and "s3cret" not in out
    assert "the configuration is valid" in out


def test_check_config_fails_as_a_start_would(tmp_path: Path) -> None:
    from tests.support.tokens import PRIVATE_PEM

    key = tmp_path / "key.pem"
    key.write_text(PRIVATE_PEM)  # the private key given where the public one belongs
    for args, said in ((["--jwt-public-key", str(key)], "this is a private key"),
                       (["--allow-anonymous", "--broker", "redis://h:notaport"], "Port"),
                       (["--allow-anonymous", "--broker-ack", "replica"], "needs a Redis broker"),
                       (["--allow-anonymous", "--jwt-leeway", "999"], "leeway")):
        result = runner.invoke(app, ["serve", "--check-config", *args])
        assert result.exit_code == 2, args
        assert said in plain(result.output), (args, plain(result.output))
        assert "configuration is valid" not in plain(result.output)
