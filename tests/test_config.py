"""``Settings`` knobs are declared once (``wsops.config.knob``) and reach ``wsops serve`` whole.

Every test enumerates the dataclass fields, so a field added without its declaration, or one whose
flag or ``WSOPS_*`` variable does not reach the ``Settings`` built, fails here.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import wsops.ops.serve
from wsops.cli import app
from wsops.config import KNOB, Knob, Settings, internal, knob, knobs
from wsops.node.worker import settings_from_json, settings_to_json

KNOBS = knobs()
WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}
PEM = "-----BEGIN PUBLIC KEY-----\nnot checked here\n-----END PUBLIC KEY-----\n"


@dataclass(frozen=True)
class Sample:
    """A value other than the default, as flags, as the env var, and as the field holds it."""

    args: list[str]
    env: str
    expected: Any


def _special(name: str, tmp_path: Path) -> Sample | None:
    """The knobs whose command-line form differs from the field, or whose values are checked."""
    if name == "admin_port":  # -1 disables the admin listener
        return Sample(["--admin-port", "-1"], "-1", None)
    if name == "jwt_public_key":  # a file on the command line, its text in Settings
        key = tmp_path / "key.pem"
        key.write_text(PEM)
        return Sample(["--jwt-public-key", str(key)], str(key), PEM)
    if name == "allowed_origins":  # --allowed-origin, repeated; whitespace-separated in env
        a, b = "https://a.example", "https://b.example"
        return Sample(["--allowed-origin", a, "--allowed-origin", b], f"{a} {b}", (a, b))
    if name == "admin_advertise_url":
        url = "http://10.0.0.7:9765"
        return Sample(["--admin-advertise-url", url], url, url)
    if name == "trace_sample_ratio":
        return Sample(["--trace-sample-ratio", "0.5"], "0.5", 0.5)
    if name == "broker_ack":  # checked: master or replica
        return Sample(["--broker-ack", "replica"], "replica", "replica")
    return None


SPECIAL = ("admin_port", "jwt_public_key", "allowed_origins", "admin_advertise_url",
           "trace_sample_ratio", "broker_ack")


def sample(k: Knob, tmp_path: Path) -> Sample:
    special = _special(k.name, tmp_path)
    if special is not None:
        return special
    default = k.cli_default
    if k.cli_type is bool:
        flag = f"--no-{k.flag[2:]}" if default else k.flag
        return Sample([flag], "false" if default else "true", not default)
    if k.cli_type is int:
        return Sample([k.flag, str(default + 1)], str(default + 1), default + 1)
    if k.cli_type is float:
        return Sample([k.flag, str(default + 0.25)], str(default + 0.25), default + 0.25)
    if k.cli_type in (str, str | None):
        value = f"x-{k.name}"
        return Sample([k.flag, value], value, value)
    raise AssertionError(f"no sample value for {k.name} ({k.cli_type}): add one to _special")


@pytest.fixture()
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Settings, bool]]:
    """``wsops serve`` records the Settings (and use_uvloop) it would serve instead of serving."""
    seen: list[tuple[Settings, bool]] = []

    def capture(settings: Settings, *, use_uvloop: bool = True) -> int:
        seen.append((settings, use_uvloop))
        return 0

    monkeypatch.setattr(wsops.ops.serve, "run", capture)
    monkeypatch.setattr(wsops.ops.serve, "supervise", capture)
    for k in KNOBS:  # none of the caller's WSOPS_* leak in
        monkeypatch.delenv(k.env, raising=False)
    monkeypatch.delenv("WSOPS_UVLOOP", raising=False)
    return seen


def serve(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["serve", *args], env=env)


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def served_once(result: Result, seen: list[tuple[Settings, bool]]) -> Settings:
    assert result.exit_code == 0, plain(result.output)
    assert len(seen) == 1
    return seen.pop()[0]


def test_every_field_declares_whether_it_is_a_knob() -> None:
    for f in dataclasses.fields(Settings):
        assert KNOB in f.metadata, f"Settings.{f.name}: declare it with knob(...) or internal()"
    knob_fields = [f.name for f in dataclasses.fields(Settings) if f.metadata[KNOB] is not None]
    assert [k.name for k in KNOBS] == knob_fields
    assert {"rate_limit_strikes", "gc_threshold"} <= set(knob_fields)


def test_a_field_without_a_declaration_is_refused() -> None:
    @dataclass(frozen=True)
    class Declared:
        a: int = knob(1, "A knob.")
        b: int = internal(2, "set by code only")

    @dataclass(frozen=True)
    class Undeclared:
        a: int = knob(1, "A knob.")
        c: int = 3

    assert [(k.name, k.flag, k.env, k.cli_type) for k in knobs(Declared)] == [
        ("a", "--a", "WSOPS_A", int)]
    with pytest.raises(TypeError, match=r"Undeclared\.c declares neither"):
        knobs(Undeclared)


RENAMED_FLAGS = {"allowed_origins": "--allowed-origin"}  # repeated: one origin each


def test_flags_and_env_vars_are_the_field_names() -> None:
    """What README, runbooks and deployments use: renaming one breaks them."""
    for k in KNOBS:
        assert k.flag == RENAMED_FLAGS.get(k.name, "--" + k.name.replace("_", "-"))
        assert k.env == "WSOPS_" + k.name.upper()


def test_flags_and_env_vars_are_unique_and_well_formed() -> None:
    flags = [k.flag for k in KNOBS] + [f"--no-{k.flag[2:]}" for k in KNOBS if k.cli_type is bool]
    flags += ["--no-uvloop", "--help"]
    envs = [k.env for k in KNOBS]
    assert len(set(flags)) == len(flags)
    assert len(set(envs)) == len(envs)
    for k in KNOBS:
        assert re.fullmatch(r"--[a-z][a-z0-9-]*", k.flag), k.flag
        assert re.fullmatch(r"WSOPS_[A-Z][A-Z0-9_]*", k.env), k.env
        assert k.help.strip(), k.name


def test_help_lists_every_knob_with_its_env_var_and_help() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env=WIDE)
    assert result.exit_code == 0
    out = plain(result.output)
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())
    for k in KNOBS:
        assert re.search(rf"(^|\s){re.escape(k.flag)}\s", out), k.flag
        if k.cli_type is bool:
            assert f"--no-{k.flag[2:]}" in out, k.flag
        assert f"[env var: {k.env}]" in out, k.env
        assert " ".join(k.help.split()) in flat, k.name
    assert "--no-uvloop" in out and "Example: wsops serve" in out


def test_no_flag_and_no_env_var_give_the_settings_defaults(
        served: list[tuple[Settings, bool]]) -> None:
    assert serve().exit_code == 0
    assert served == [(Settings(), True)]


def test_no_uvloop_reaches_the_runner(served: list[tuple[Settings, bool]]) -> None:
    assert serve("--no-uvloop").exit_code == 0
    assert served == [(Settings(), False)]


def test_uvloop_is_an_on_off_pair_with_its_env_var(served: list[tuple[Settings, bool]]) -> None:
    """``--uvloop/--no-uvloop`` (was ``--no-uvloop/--no-no-uvloop``), on by default."""
    assert serve("--uvloop").exit_code == 0
    assert serve(env={"WSOPS_UVLOOP": "0"}).exit_code == 0
    assert serve("--uvloop", env={"WSOPS_UVLOOP": "0"}).exit_code == 0
    assert [use for _, use in served] == [True, False, True]
    out = plain(serve("--help", env=WIDE).output)
    assert re.search(r"--uvloop\s+--no-uvloop\s", out) and "--no-no-" not in out
    assert "[env var: WSOPS_UVLOOP]" in out


@pytest.mark.parametrize("k", KNOBS, ids=[k.name for k in KNOBS])
def test_each_flag_reaches_its_field_and_no_other(
        k: Knob, served: list[tuple[Settings, bool]], tmp_path: Path) -> None:
    s = sample(k, tmp_path)
    assert s.expected != getattr(Settings(), k.name)
    settings = served_once(serve(*s.args), served)
    assert settings == Settings().replace(**{k.name: s.expected})


@pytest.mark.parametrize("k", KNOBS, ids=[k.name for k in KNOBS])
def test_each_env_var_reaches_its_field_and_no_other(
        k: Knob, served: list[tuple[Settings, bool]], tmp_path: Path) -> None:
    s = sample(k, tmp_path)
    settings = served_once(serve(env={k.env: s.env}), served)
    assert settings == Settings().replace(**{k.name: s.expected})


def test_special_samples_name_existing_knobs() -> None:
    assert set(SPECIAL) <= {k.name for k in KNOBS}


def test_a_flag_beats_its_env_var(served: list[tuple[Settings, bool]]) -> None:
    settings = served_once(serve("--rate-limit-strikes", "7",
                                 env={"WSOPS_RATE_LIMIT_STRIKES": "9"}), served)
    assert settings.rate_limit_strikes == 7


def test_admin_port_zero_and_up_is_a_port(served: list[tuple[Settings, bool]]) -> None:
    assert served_once(serve("--admin-port", "0"), served).admin_port == 0


def test_an_unreadable_public_key_file_exits_2(
        served: list[tuple[Settings, bool]], tmp_path: Path) -> None:
    result = serve("--jwt-public-key", str(tmp_path / "missing.pem"))
    assert result.exit_code == 2
    assert "wsops serve:" in plain(result.output) and "missing.pem" in plain(result.output)
    assert served == []


def test_workers_above_1_go_to_the_supervisor(
        monkeypatch: pytest.MonkeyPatch, served: list[tuple[Settings, bool]]) -> None:
    def no_run(settings: Settings, *, use_uvloop: bool = True) -> int:
        raise AssertionError("run() called with --workers 2")

    monkeypatch.setattr(wsops.ops.serve, "run", no_run)
    assert served_once(serve("--workers", "2"), served).workers == 2


def test_worker_json_round_trip_keeps_every_field(tmp_path: Path) -> None:
    changed = Settings(**{k.name: sample(k, tmp_path).expected for k in KNOBS})
    for settings in (Settings(), changed):
        wire = json.loads(json.dumps(settings_to_json(settings)))
        assert set(wire) == {f.name for f in dataclasses.fields(Settings)}
        assert settings_from_json(wire) == settings
    assert all(getattr(changed, k.name) != getattr(Settings(), k.name) for k in KNOBS)
