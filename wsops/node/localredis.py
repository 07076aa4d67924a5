"""A private ``redis-server`` for the workers of one ``wsops serve --workers N`` (memory broker).

Loopback only, on a free port, with a random password (in a 0600 config file, not in argv), no
persistence, its temp dir removed once it runs: the embedded broker's semantics, shared by
processes. It is started before the supervisor's event loop, from its only thread (``preexec_fn``).
"""

from __future__ import annotations

import contextlib
import ctypes
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MISSING = ("--workers > 1 needs a broker shared by the workers: install redis-server "
           "or pass --broker redis://...")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: have the kernel SIGTERM redis-server when the supervisor dies, even by SIGKILL
    (its workers notice on their own: their stdin closes)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _ping(port: int, password: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
            return b"+PONG" in s.recv(64)
    except OSError:
        return False


def _start(binary: str, workdir: Path, timeout: float) -> tuple[subprocess.Popen[bytes], str]:
    password = secrets.token_hex(16)
    port = _free_port()  # another process may take it first: the caller retries
    conf = workdir / "redis.conf"
    conf.touch(mode=0o600)
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nrequirepass {password}\nsave \"\"\nappendonly no\n"
        f"dir {workdir}\ndaemonize no\nloglevel warning\n")
    proc = subprocess.Popen([binary, str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True,  # a terminal's Ctrl-C is not for it
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise OSError(f"redis-server exited with {proc.returncode}: {err.strip()[-300:]}")
        if _ping(port, password):
            return proc, f"redis://:{password}@127.0.0.1:{port}/0"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise OSError(f"the private redis-server did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def private_redis(timeout: float = 10.0, attempts: int = 3) -> Iterator[str]:
    """Run a private redis-server; yields its URL (with the password). Raises OSError with
    ``MISSING`` when there is no ``redis-server`` on PATH."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise OSError(MISSING)
    workdir = Path(tempfile.mkdtemp(prefix="wsops-workers-redis-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        for attempt in range(attempts):
            try:
                proc, url = _start(binary, workdir, timeout)
                break
            except OSError:
                if attempt == attempts - 1:
                    raise
        # Redis has read its config and never writes (no RDB, no AOF): nothing to leave behind,
        # even if the supervisor is killed.
        shutil.rmtree(workdir, ignore_errors=True)
        yield url
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
