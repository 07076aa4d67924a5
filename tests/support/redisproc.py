"""A throwaway ``redis-server`` for tests: its own free port and temp dir, no persistence.

Never the machine's Redis on 6379. Tests can stop, restart (same port, empty), pause
(SIGSTOP) and resume (SIGCONT) it to inject faults.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.support.netns import Host
from tests.support.ports import free_port
from tests.support.waits import until_sync

# Short beats and timeouts keep fault tests quick: a node is dead 1.5 s after its last beat,
# a silent pub/sub link after 1.5 s.
BEAT = 0.5
TIMEOUT = 1.0


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


class RedisExited(RuntimeError):
    """redis-server exited as it started (``log``: the end of its own log)."""

    def __init__(self, port: int, code: int, log: str) -> None:
        super().__init__(f"redis-server on port {port} exited with {code}: {log or 'no log'}")
        self.port_taken = "Address already in use" in log


class RedisProc:
    """One redis-server process on a fixed port (kept across restarts)."""

    def __init__(self, port: int | None = None, extra: list[str] | None = None,
                 host: Host | None = None) -> None:
        self.port = port or free_port()
        self.own_port = port is None  # chosen here: another may be chosen if it is taken
        self.extra = extra or []  # more redis-server arguments (``--replicaof H P``)
        self.host = host  # a network namespace to run in (``tests.support.netns``)
        self.address = host.ip if host is not None else "127.0.0.1"
        self.dir = Path(tempfile.mkdtemp(prefix="wsops-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://{self.address}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start it and wait for its PING. A port chosen here that another process took
        meanwhile (between the check and the bind) is chosen again, twice at most; any other
        exit at start says why (the server's own log)."""
        for attempt in (1, 2, 3):
            try:
                self._start(timeout)
                return
            except RedisExited as e:
                if not (self.own_port and e.port_taken and attempt < 3):
                    raise
                self.port = free_port()

    def _start(self, timeout: float) -> None:
        binary = redis_server_binary()
        assert binary is not None, "redis-server is not installed"
        # On a host of its own, clients come from other addresses: no protected mode.
        wrap = self.host.argv() if self.host is not None else []
        open_to = ["--protected-mode", "no"] if self.host is not None else []
        log_path = self.dir / "redis.log"
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*wrap, binary, "--port", str(self.port), "--bind", self.address, "--save", "",
                 "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no",
                 "--loglevel", "warning", *open_to, *self.extra],
                stdout=log, stderr=subprocess.STDOUT,
            )
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                tail = log_path.read_bytes()[-1000:].decode(errors="replace").strip()
                raise RedisExited(self.port, proc.returncode, tail)
            return self.ping()

        try:
            until_sync(up, timeout, what=f"redis-server on port {self.port} to answer PING")
        except BaseException:
            self.stop()
            raise

    def ping(self) -> bool:
        try:
            with socket.create_connection((self.address, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill it (data is gone: it never persists)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        if self.paused:
            os.kill(proc.pid, signal.SIGCONT)
            self.paused = False
        proc.kill()
        proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def broker_url(proc: RedisProc) -> str:
    """The broker URL of a node on ``proc``, with the quick ``BEAT`` and ``TIMEOUT``."""
    return f"{proc.url}?heartbeat={BEAT}&timeout={TIMEOUT}"
