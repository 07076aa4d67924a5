"""Start real ``wsops serve`` processes on free ports for tests."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tests.support.netns import Host
from tests.support.ports import free_port
from tests.support.waits import until_sync


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int
    address: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"ws://{self.address}:{self.port}/ws"

    @property
    def admin_url(self) -> str:
        return f"http://{self.address}:{self.admin_port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_serve(*args: str, timeout: float = 15.0,
                env: Mapping[str, str] | None = None, host: Host | None = None) -> ServeProcess:
    """``wsops serve`` with ``args`` (and ``env`` over this process' environment); returns
    once /readyz answers 200. On ``host`` (a network namespace, ``tests.support.netns``) it
    listens on the host's address, its admin listener too (give it a token)."""
    if host is None:
        port, admin, address, wrap = free_port(), free_port(), "127.0.0.1", []
    else:
        port, admin, address, wrap = 8765, 9765, host.ip, host.argv()
        args = ("--host", address, "--admin-host", address, *args)
    proc = subprocess.Popen(
        [*wrap, sys.executable, "-m", "wsops", "serve", "--port", str(port), "--admin-port",
         str(admin), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    sp = ServeProcess(proc, port, admin, address)
    try:
        wait_ready(sp, timeout)
    except BaseException:
        sp.stop()
        raise
    return sp


def wait_ready(sp: ServeProcess, timeout: float = 15.0,
               output: Callable[[], str] | None = None) -> None:
    """Until ``sp``'s /readyz answers 200; a process that exits first fails at once with its
    output (read from its stdout, or given by ``output`` when something else reads it)."""

    def ready() -> bool:
        if sp.proc.poll() is not None:
            if output is not None:
                out = output()
            else:
                out = sp.proc.stdout.read().decode() if sp.proc.stdout else ""
            raise RuntimeError(f"wsops serve exited with {sp.proc.returncode}: {out}")
        try:
            with urllib.request.urlopen(sp.admin_url + "/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    until_sync(ready, timeout, what=f"wsops serve on port {sp.port} to be ready (/readyz 200)",
               step=0.1)
