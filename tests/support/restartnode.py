"""Replace a ``wsops serve`` process: the restart command of the rollout tests.

    python -m tests.support.restartnode DIR ADMIN_URL [--python EXE] [--move]
        [more wsops serve args...]

The node whose admin listener is ADMIN_URL is described in DIR by its admin port:
``PORT.args`` (its ``wsops serve`` arguments, JSON) and ``PORT.pid``. Stops the process named
there (SIGTERM: it drains, which is quick once drained, and exits; waited for up to 30 s, then
killed), starts ``python -m wsops serve ARGS MORE`` in a session of its own with its output
appended to ``PORT.log``, writes its pid and exits 0 at once: whoever restarts waits for the
new node to be ready on its admin URL. ``--python EXE`` runs the wsops of another environment
(a venv holding an older version) instead of this interpreter's. ``--move`` starts the new
node on other free ports (its files renamed after its new admin port), as an orchestrator
that gives a replacement a new address does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited (its parent has not reaped it yet)


def stop(pid: int, patience: float = 30.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + patience
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    where, port, more = Path(argv[0]), urlsplit(argv[1]).port, argv[2:]
    python = sys.executable
    if more[:1] == ["--python"]:
        python, more = more[1], more[2:]
    move = more[:1] == ["--move"]
    if move:
        more = more[1:]
    saved = json.loads((where / f"{port}.args").read_text())
    pidfile = where / f"{port}.pid"
    if pidfile.exists():
        stop(int(pidfile.read_text()))
    if move:
        from tests.support.ports import free_port

        for flag in ("--port", "--admin-port"):
            saved[saved.index(flag) + 1] = str(free_port())
        pidfile.unlink(missing_ok=True)
        (where / f"{port}.args").unlink()
        port = int(saved[saved.index("--admin-port") + 1])
        (where / f"{port}.args").write_text(json.dumps(saved))
        pidfile = where / f"{port}.pid"
    args = [*saved, *more]
    with open(where / f"{port}.log", "ab") as log:
        proc = subprocess.Popen([python, "-m", "wsops", "serve", *args],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                cwd=where, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


def restart_template(where: Path, *extra: str) -> str:
    """``wsops rollout --restart`` (or ``--rollback``) running this script for the nodes
    described in ``where``, ``{admin_url}`` left for the rollout to fill."""
    import shlex

    return " ".join([shlex.quote(sys.executable), "-m", "tests.support.restartnode",
                     shlex.quote(str(where)), "{admin_url}", *map(shlex.quote, extra)])


async def run_rollout(*args: str, cwd: Path, timeout: float = 180.0) -> tuple[int, dict[str, Any]]:
    """``wsops rollout --json ARGS``: its exit code and its report."""
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wsops", "rollout", "--json", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    try:
        return proc.returncode, json.loads(out)
    except ValueError:
        raise AssertionError(f"no JSON from wsops rollout: {out!r} {err.decode()}") from None


def kill_all(where: Path) -> None:
    """Kill every node a pid file in ``where`` names, and wait until each is gone."""
    for pidfile in where.glob("*.pid") if where.exists() else []:
        try:
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            continue
        end = time.monotonic() + 10
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.02)
