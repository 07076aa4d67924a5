"""Processes of the fan-out benchmark: the servers under test, subscriber workers, py-spy.

Every process is started in its own session and has a ``stop`` that ends it for sure (a polite
signal first, then a kill), so ``bench/fanout.py`` can stop everything in ``finally`` blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

BENCH = Path(__file__).resolve().parent


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
    """Optional ``py-spy record`` of the server during one phase (collapsed stacks, text)."""

    def __init__(self, outdir: Path | None, pid: int) -> None:
        self.outdir = outdir
        self.pid = pid
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, label: str) -> None:
        if self.outdir is None:
            return
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = self.outdir / f"{label}.txt"
        self.proc = subprocess.Popen(
            [pyspy, "record", "--pid", str(self.pid), "--format", "raw", "--rate", "250",
             "--nonblocking", "--output", str(out)],
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


class ServerProcess:
    """A server under test in its own process, with its output in a log file."""

    def __init__(self, name: str, subscribers: int, logdir: Path, room: str) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = logdir / f"{name}-{self.port}.log"
        if name == "wsops":
            admin = free_port()
            argv = [
                sys.executable, "-m", "wsops", "serve", "--allow-anonymous",
                "--port", str(self.port), "--admin-port", str(admin),
                "--rate-limit", "1000000", "--rate-burst", "1000000",
                "--max-connections", str(max(20000, subscribers + 10)),
            ]
            self.ready_url = f"http://127.0.0.1:{admin}/readyz"
            self.subscribe: str | None = json.dumps(
                {"op": "subscribe", "room": room, "id": 1}, separators=(",", ":"))
        else:
            argv = [sys.executable, str(BENCH / "peers" / "naive_aiohttp.py"),
                    "--port", str(self.port)]
            self.ready_url = f"http://127.0.0.1:{self.port}/healthz"
            self.subscribe = None
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

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


class WorkerProcess:
    """A ``loadworker.py`` holding a share of the subscribers, driven over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ps = psutil.Process(proc.pid)

    @classmethod
    async def start(cls, port: int, subscribers: int) -> WorkerProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(BENCH / "loadworker.py"), "--port", str(port),
            "--subscribers", str(subscribers),
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
