"""Processes of the benchmarks: the servers under test, subscriber workers, py-spy.

Every process is started in its own session and has a ``stop`` that ends it for sure (a polite
signal first, then a kill), so ``bench/fanout.py`` and ``bench/overhead.py`` can stop everything
in ``finally`` blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
from wsload import SOCKETIO_PATH

BENCH = Path(__file__).resolve().parent


def callgrind_total(out: Path) -> int:
    """The instruction total of a callgrind output file (``callgrind_annotate``)."""
    import re

    text = subprocess.run(["callgrind_annotate", str(out)], capture_output=True, text=True,
                          check=True).stdout
    found = re.search(r"([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", text) or re.search(
        r"([\d,]+)\s+PROGRAM TOTALS", text)
    if found is None:
        raise SystemExit("callgrind_annotate printed no total")
    return int(found.group(1).replace(",", ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def sys_seconds(proc: psutil.Process) -> float:
    return float(proc.cpu_times().system)


class Profiler:
    """Optional ``py-spy record`` of the server during one phase (collapsed stacks, text).

    ``nonblocking`` reads the stacks while the process runs (least overhead, but some samples
    are torn: frames of different moments, odd line numbers); blocking pauses it per sample.
    """

    def __init__(self, outdir: Path | None, pid: int, rate: int = 250,
                 nonblocking: bool = True) -> None:
        self.outdir = outdir
        self.pid = pid
        self.rate = rate
        self.nonblocking = nonblocking
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, label: str) -> None:
        if self.outdir is None:
            return
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = self.outdir / f"{label}.txt"
        self.proc = subprocess.Popen(
            [pyspy, "record", "--pid", str(self.pid), "--format", "raw", "--rate", str(self.rate),
             *(["--nonblocking"] if self.nonblocking else []), "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(0.5)  # let it attach before the phase starts

    def stop(self) -> None:
        """SIGINT makes py-spy write its output; kill it if it does not exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ManagedProcess:
    """A process in its own session with its output in a log file, ready when a URL says 200.

    ``cpus`` pins it (and the threads it starts later) to those CPUs.
    """

    def __init__(self, name: str, argv: list[str], log_path: Path, ready_url: str,
                 env: dict[str, str] | None = None, cpus: Sequence[int] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self.ready_url = ready_url
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **env} if env else None)
        self.ps = psutil.Process(self.proc.pid)
        if cpus:
            # Set before the interpreter is up (it starts no thread that early): inherited.
            self.ps.cpu_affinity(list(cpus))

    async def wait_ready(self, time_limit: float = 20.0) -> None:
        end = time.monotonic() + time_limit
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                status = await asyncio.to_thread(self._get_status)
                if status == 200:
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {time_limit}s:\n{self.log_tail()}")

    def _get_status(self) -> int:
        with urllib.request.urlopen(self.ready_url, timeout=1) as r:
            return int(r.status)

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (wsops drains what is left), then SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


NODE_WS = BENCH / "peers" / "node_ws"
SERVER_KINDS = ("wsops", "naive", "socketio", "node-ws", "picows")


class ServerProcess(ManagedProcess):
    """A server under test: ``kind`` ``wsops`` (``wsops serve`` plus ``extra_args``), or one of
    the peers in ``bench/peers``: ``naive`` (aiohttp), ``socketio`` (python-socketio),
    ``node-ws`` (Node ``ws``) or ``picows``; ``name`` labels results and defaults to ``kind``.
    ``path`` and ``dialect`` tell subscribers how to connect (see ``wsload.SubscriberPool``),
    ``subscribe`` what to send first (``None``: nothing)."""

    def __init__(self, kind: str, subscribers: int, logdir: Path, room: str, *,
                 name: str | None = None, extra_args: Sequence[str] = (),
                 env: dict[str, str] | None = None, cpus: Sequence[int] | None = None) -> None:
        name = name or kind
        self.kind = kind
        self.port = free_port()
        self.admin_port: int | None = None
        self.path = "/ws"
        self.dialect = "raw"
        self.subscribe: str | None = None
        if kind == "wsops":
            admin = self.admin_port = free_port()
            argv = [
                sys.executable, "-m", "wsops", "serve", "--allow-anonymous",
                "--port", str(self.port), "--admin-port", str(admin),
                "--rate-limit", "1000000", "--rate-burst", "1000000",
                "--max-connections", str(max(20000, subscribers + 10)), *extra_args,
            ]
            ready_url = f"http://127.0.0.1:{admin}/readyz"
            self.subscribe = json.dumps(
                {"op": "subscribe", "room": room, "id": 1}, separators=(",", ":"))
        elif kind in ("naive", "socketio", "picows"):
            script = {"naive": "naive_aiohttp.py", "socketio": "socketio_server.py",
                      "picows": "picows_server.py"}[kind]
            argv = [sys.executable, str(BENCH / "peers" / script),
                    "--port", str(self.port), *extra_args]
            ready_url = f"http://127.0.0.1:{self.port}/healthz"
            if kind == "socketio":
                self.path, self.dialect = SOCKETIO_PATH, "socketio"
        elif kind == "node-ws":
            node = shutil.which("node")
            if node is None or not (NODE_WS / "node_modules" / "ws").is_dir():
                raise RuntimeError(f"node-ws needs node and its modules: npm ci --prefix {NODE_WS}")
            argv = [node, str(NODE_WS / "server.js"), "--port", str(self.port), *extra_args]
            ready_url = f"http://127.0.0.1:{self.port}/healthz"
        else:
            raise ValueError(f"unknown server kind {kind!r}")
        super().__init__(name, argv, logdir / f"{name}-{self.port}.log", ready_url, env, cpus)


class WorkerProcess:
    """A ``loadworker.py`` holding a share of the subscribers, driven over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ps = psutil.Process(proc.pid)

    @classmethod
    async def start(cls, port: int, subscribers: int, path: str = "/ws",
                    dialect: str = "raw") -> WorkerProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(BENCH / "loadworker.py"), "--port", str(port),
            "--subscribers", str(subscribers), "--path", path, "--dialect", dialect,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        return cls(proc)

    async def call(self, cmd: dict[str, Any], wait: float) -> dict[str, Any]:
        """Send one command; its answer, or TimeoutError after ``wait`` seconds."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), wait)
        if not line:
            raise RuntimeError(f"worker exited ({cmd.get('cmd')})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call({"cmd": "close"}, 10.0)
            try:
                await asyncio.wait_for(self.proc.wait(), 5.0)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
