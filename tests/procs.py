"""Start real ``wsops serve`` processes on free ports for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_serve(*args: str, timeout: float = 15.0,
                env: Mapping[str, str] | None = None) -> ServeProcess:
    """``wsops serve`` with ``args`` (and ``env`` over this process' environment); returns
    once /readyz answers 200."""
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsops", "serve", "--port", str(port), "--admin-port", str(admin),
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    sp = ServeProcess(proc, port, admin)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"wsops serve exited with {proc.returncode}: {out}")
        try:
            with urllib.request.urlopen(sp.admin_url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return sp
        except OSError:
            time.sleep(0.1)
    sp.stop()
    raise RuntimeError("wsops serve did not become ready")
