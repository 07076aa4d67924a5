"""``wsops serve --workers N``: N worker processes serving one port, supervised as one node.

Each worker (``wsops.node.worker``) binds the public port with SO_REUSEPORT, so the kernel spreads
new connections over them. Rooms span workers through the shared broker: the ``--broker`` given,
or with ``memory`` a private redis-server (``wsops.node.localredis``). The supervisor serves the
public admin listener for the node (``wsops.admin.aggregate``), restarts a worker that dies
(with backoff; its clients reconnect to the others meanwhile), and on SIGTERM/SIGINT drains
every worker, waits for them, then stops the private Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
import time
from dataclasses import dataclass

from wsops.admin.access import token_from_env
from wsops.admin.aggregate import WorkerRef, WorkersAdmin
from wsops.config import Settings
from wsops.node.worker import settings_to_json

log = logging.getLogger("wsops.serve")
READY_TIMEOUT = 30.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
STABLE_AFTER = 30.0  # a worker that served this long before dying restarts without delay build-up
KILL_GRACE = 10.0  # past the drain deadline, workers still running are killed


class StartError(Exception):
    """The node could not start: a worker failed before serving."""


@dataclass
class Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    admin_port: int | None = None
    restarts: int = 0
    started: float = 0.0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def ref(self) -> WorkerRef:
        url = f"http://127.0.0.1:{self.admin_port}" if self.admin_port and self.alive else None
        return WorkerRef(self.index, url, self.proc.pid if self.alive and self.proc else None,
                         self.restarts)


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` with SO_REUSEPORT without listening: port 0 becomes a real port for
    every worker, and the port stays ours while workers restart. A socket that does not listen
    gets no connections."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


class Supervisor:
    """Starts, watches and stops the workers; ``worker_settings`` is what each one runs."""

    def __init__(self, settings: Settings, worker_settings: Settings, use_uvloop: bool) -> None:
        self.settings = settings
        self.worker_settings = worker_settings
        self.use_uvloop = use_uvloop
        self.workers = [Worker(i) for i in range(settings.workers)]
        self.state = "starting"  # starting | serving | stopping

    def own_reasons(self) -> list[str]:
        """The supervisor's own; the admin listener asks each worker for theirs."""
        if self.state == "serving":
            return []
        return ["draining" if self.state == "stopping" else "starting"]

    async def _spawn(self, w: Worker) -> None:
        w.started, w.admin_port = time.monotonic(), None
        w.proc = proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wsops.node.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        # Kept open: the worker drains when it closes, i.e. when this process is gone.
        spec = {"index": w.index, "uvloop": self.use_uvloop,
                "settings": settings_to_json(self.worker_settings)}
        proc.stdin.write(json.dumps(spec).encode() + b"\n")
        line = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT)
        if not line:
            if proc.returncode is None:
                proc.kill()
            code = await proc.wait()
            raise StartError(f"worker {w.index} exited with {code} before serving "
                             "(its log is above)")
        w.admin_port = int(json.loads(line)["admin_port"])
        log.info("worker %d serving (pid %d, admin 127.0.0.1:%d)", w.index, proc.pid,
                 w.admin_port)

    async def _watch(self, w: Worker) -> None:
        """Restart ``w`` each time it exits, with exponential backoff, until stopping."""
        delay = BACKOFF_FIRST
        while self.state == "serving":
            assert w.proc is not None
            code = await w.proc.wait()
            if self.state != "serving":
                return
            if time.monotonic() - w.started > STABLE_AFTER:
                delay = BACKOFF_FIRST
            log.error("worker %d (pid %d) exited with %d; restarting in %.1f s",
                      w.index, w.proc.pid, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
            w.restarts += 1
            try:
                await self._spawn(w)
            except (StartError, OSError) as exc:
                log.error("%s", exc)

    def _signal_workers(self) -> None:
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGTERM)

    async def _stop_workers(self) -> int:
        """SIGTERM every worker (each drains), wait; returns 0 if all exited 0."""
        procs = [w.proc for w in self.workers if w.proc is not None]
        self._signal_workers()
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)),
                                   self.settings.drain_deadline + KILL_GRACE)
        except TimeoutError:
            for p in procs:
                if p.returncode is None:
                    log.error("worker pid %d still running past the drain deadline: killed",
                              p.pid)
                    p.kill()
            await asyncio.gather(*(p.wait() for p in procs))
        return 0 if all(p.returncode == 0 for p in procs) else 1

    async def run(self) -> int:
        s = self.settings
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():  # a second signal: workers end their drains at once
                self._signal_workers()
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        admin = None
        if s.admin_port is not None:
            admin = WorkersAdmin(s.admin_host, s.admin_port, token_from_env(),
                                 lambda: [w.ref() for w in self.workers], self.own_reasons,
                                 handshake_timeout=s.handshake_timeout,
                                 max_connections=s.admin_max_connections,
                                 advertise_url=s.admin_advertise_url)
            await admin.start()
        watchers: list[asyncio.Task[None]] = []
        try:
            results = await asyncio.gather(*(self._spawn(w) for w in self.workers),
                                           return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                self.state = "stopping"
                await self._stop_workers()
                raise StartError(str(failed[0]))
            self.state = "serving"
            ws = self.worker_settings
            log.info("wsops serving ws://%s:%d/ws with %d workers%s (broker %s)", ws.host,
                     ws.port, len(self.workers), f" admin {admin.url}" if admin else "",
                     "private redis" if s.broker in ("memory", "") else "redis")
            watchers = [asyncio.create_task(self._watch(w)) for w in self.workers]
            await stop.wait()
            self.state = "stopping"
            for task in watchers:
                task.cancel()
            log.info("draining %d workers (deadline %.0fs)", len(self.workers), s.drain_deadline)
            code = await self._stop_workers()
            log.info("all workers stopped (exit %d); exiting", code)
            return code
        finally:
            for task in watchers:
                task.cancel()
            if admin is not None:
                await admin.stop()


API_WITH_WORKERS = ("--api-port is not served by a --workers node yet: run the server API on "
                    "a node of one process on the same broker")


def _check(settings: Settings) -> None:
    """Refuse here what every worker would refuse (auth, broker URL), with the same message."""
    from wsops.server.app import Node
    from wsops.server.broker.redis_url import check_broker

    check_broker(settings.broker, settings.broker_ack)
    if settings.api_port is not None:
        raise ValueError(API_WITH_WORKERS)
    Node(settings.replace(broker="memory", broker_ack="master"))


def supervise(settings: Settings, *, use_uvloop: bool = True) -> int:
    """Run the node as ``settings.workers`` processes until SIGTERM/SIGINT; the exit code (2 if
    a worker failed to start). Raises ValueError or OSError on bad settings, a busy port, no
    redis-server."""
    from wsops.node.localredis import private_redis

    _check(settings)
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(reserve_port(settings.host, settings.port))
        broker = settings.broker
        if broker in ("memory", ""):
            broker = stack.enter_context(private_redis())
        worker_settings = settings.replace(
            port=sock.getsockname()[1], broker=broker, workers=1,
            admin_host="127.0.0.1", admin_port=0)
        try:
            return asyncio.run(Supervisor(settings, worker_settings, use_uvloop).run())
        except StartError as exc:
            log.error("%s", exc)
            return 2
