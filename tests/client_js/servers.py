"""``wsops serve`` processes for the JS client's tests, on fixed ports so they can be stopped
and started again (the fleet example's node and process helpers)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from tests.support.examples import FLEET_EXAMPLE, load_example
from tests.support.ports import free_port

fleet_example = load_example(FLEET_EXAMPLE)


class Server:
    """One ``wsops serve`` on fixed ports, so it can be stopped and started again."""

    def __init__(self, workdir: Path, *args: str) -> None:
        port, admin = free_port(), free_port()
        argv = [sys.executable, "-m", "wsops", "serve", "--port", str(port),
                "--admin-port", str(admin), *args]
        self.node = fleet_example.Node(0, port, admin,
                                       fleet_example.Proc("wsops", argv, workdir / "wsops.log"))

    @property
    def url(self) -> str:
        return str(self.node.url)

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.node.port}/static/wsops-client.js"

    def start(self, timeout: float = 20.0) -> None:
        self.node.proc.start()
        fleet_example.Fleet.wait_ready(self.node, timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.node.proc.stop(sig)
