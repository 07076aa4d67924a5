"""Try a wsops fleet on one machine: Redis, three ``wsops serve`` nodes and HAProxy, on loopback.

    python examples/fleet/fleet.py                  # needs redis-server and haproxy (Debian)
    python examples/fleet/fleet.py --nodes 3 --port 8765
    python examples/fleet/fleet.py --cluster        # on a Redis Cluster: 3 masters, 3 replicas

Clients connect to HAProxy (``ws://127.0.0.1:8765/ws``), which spreads them over the nodes and
health-checks each node's ``/readyz`` on its admin port, so a draining node (or one that lost
Redis) gets no new connections. Every process runs in a temp dir and logs there; Ctrl-C stops
them all. While it runs, try from another shell::

    wsops status --redis redis://127.0.0.1:<redis port>/0     # the fleet, found through Redis
    wsops status --redis redis+cluster://127.0.0.1:<port>     # with --cluster: and its shards
    wsops drain http://127.0.0.1:<admin port>                 # drain one node, clients move

The ``Fleet`` class is what the end-to-end tests drive (kill a node, stop or pause Redis).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

HAPROXY_CONFIG = """\
global
    maxconn {maxconn}
    stats socket {socket} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # An upgraded WebSocket is a tunnel: idle up to an hour (the nodes' pings keep it busy).
    timeout tunnel 1h
    timeout client-fin 5s
    # A node that refuses the connection, or answers 503 while it drains, is skipped: the
    # handshake is retried on another node.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout 503

frontend ws
    bind {host}:{port}
    default_backend nodes

backend nodes
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter {check_ms} fall 2 rise 2
{servers}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too and below 65536."""
    for _ in range(1000):
        port = random.randint(20000, 50000)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port
    raise OSError("no free port pair for a cluster node")


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise SystemExit(f"{binary} not found: install it with 'apt-get install {package}'")
    return path


@dataclass
class Proc:
    """A child process with its log file."""

    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            # Its own session: a Ctrl-C in the terminal reaches the script, which stops the
            # children in order, not every process at once.
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                          env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                          start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def send(self, sig: int) -> None:
        if self.alive:
            os.kill(self.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.send(signal.SIGCONT)  # a paused process cannot act on SIGTERM
        self.send(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Node:
    index: int
    port: int
    admin_port: int
    proc: Proc

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


@dataclass
class Fleet:
    """Redis, ``nodes`` wsops nodes and HAProxy in front, all on loopback free ports.

    ``broker_options`` go on the broker URL (``heartbeat=0.5&timeout=1`` makes fault detection
    quick for tests); ``node_args`` are extra ``wsops serve`` options for every node.
    ``cluster``: a Redis Cluster of three masters and three replicas instead of one Redis.
    """

    nodes_count: int = 3
    port: int = 0
    broker_options: str = ""
    node_args: tuple[str, ...] = ("--allow-anonymous",)
    check_interval_ms: int = 500
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wsops-fleet-")))
    nodes: list[Node] = field(default_factory=list)
    redis_port: int = 0
    redis: Proc | None = None
    haproxy: Proc | None = None
    cluster: bool = False
    cluster_nodes: list[Proc] = field(default_factory=list)
    cluster_ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The fleet's WebSocket URL, through HAProxy."""
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def redis_url(self) -> str:
        if self.cluster:
            return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.cluster_ports)
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def broker_url(self) -> str:
        return self.redis_url + (f"?{self.broker_options}" if self.broker_options else "")

    @property
    def haproxy_socket(self) -> Path:
        return self.workdir / "haproxy.sock"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Fleet:
        haproxy = need("haproxy", "haproxy")
        self.port = self.port or free_port()
        if self.cluster:
            self.start_cluster(timeout)
        else:
            self.redis_port = self.redis_port or free_port()
            self.start_redis(timeout)
        for i in range(self.nodes_count):
            port, admin = free_port(), free_port()
            argv = [sys.executable, "-m", "wsops", "serve", "--port", str(port),
                    "--admin-port", str(admin), "--broker", self.broker_url, *self.node_args]
            node = Node(i, port, admin, Proc(f"node{i}", argv, self.workdir / f"node{i}.log"))
            self.nodes.append(node)
            node.proc.start()
        for node in self.nodes:
            self.wait_ready(node, timeout)
        config = self.workdir / "haproxy.cfg"
        config.write_text(self.haproxy_config())
        check = subprocess.run([haproxy, "-c", "-q", "-f", str(config)], capture_output=True,
                               text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy rejected {config}: {check.stdout}{check.stderr}")
        self.haproxy = Proc("haproxy", [haproxy, "-db", "-f", str(config)],
                            self.workdir / "haproxy.log")
        self.haproxy.start()
        self.wait_backends({n.index for n in self.nodes}, timeout)
        return self

    def haproxy_config(self) -> str:
        servers = "\n".join(
            f"    server {n.name} 127.0.0.1:{n.port} port {n.admin_port}" for n in self.nodes)
        return HAPROXY_CONFIG.format(maxconn=8000, socket=self.haproxy_socket, host="127.0.0.1",
                                     port=self.port, check_ms=self.check_interval_ms,
                                     servers=servers)

    def close(self) -> None:
        """Stop everything (HAProxy first, then nodes with SIGTERM, then Redis)."""
        if self.haproxy:
            self.haproxy.stop()
        for node in self.nodes:
            node.proc.stop(signal.SIGTERM, 10.0)
        if self.redis:
            self.redis.stop(signal.SIGKILL)
        for proc in self.cluster_nodes:
            proc.stop(signal.SIGKILL)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- faults --------------------------------------------------------------------------

    def kill_node(self, index: int) -> None:
        """SIGKILL: no drain, no goodbye to Redis."""
        proc = self.nodes[index].proc
        proc.send(signal.SIGKILL)
        if proc.popen is not None:
            proc.popen.wait()

    def start_redis(self, timeout: float = 10.0) -> None:
        """Start (or restart, empty: it never persists) Redis on the fleet's port."""
        binary = need("redis-server", "redis-server")
        self.redis = Proc("redis", [binary, "--port", str(self.redis_port), "--bind",
                                    "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                                    str(self.workdir), "--loglevel", "warning"],
                          self.workdir / "redis.log")
        self.redis.start()
        end = time.monotonic() + timeout
        while not self.redis_ping():
            if not self.redis.alive or time.monotonic() > end:
                raise RuntimeError(f"redis-server did not start:\n{self.redis.tail()}")
            time.sleep(0.02)

    def start_cluster(self, timeout: float = 30.0) -> None:
        """Six ``redis-server --cluster-enabled yes`` joined by ``redis-cli --cluster create``
        into three masters with a replica each."""
        binary = need("redis-server", "redis-server")
        cli = need("redis-cli", "redis-tools")
        self.cluster_ports = [cluster_port() for _ in range(6)]
        for i, port in enumerate(self.cluster_ports):
            home = self.workdir / f"cluster{i}"
            home.mkdir()
            proc = Proc(f"redis{i}", [binary, "--port", str(port), "--bind", "127.0.0.1",
                                      "--cluster-enabled", "yes", "--cluster-node-timeout",
                                      "2000", "--save", "", "--appendonly", "no", "--dir",
                                      str(home), "--loglevel", "warning"],
                        self.workdir / f"redis{i}.log")
            self.cluster_nodes.append(proc)
            proc.start()
        end = time.monotonic() + timeout
        while not all(self.redis_ping(p) for p in self.cluster_ports):
            if time.monotonic() > end:
                raise RuntimeError("the cluster's redis-servers did not start")
            time.sleep(0.02)
        create = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.cluster_ports),
             "--cluster-replicas", "1", "--cluster-yes"], capture_output=True, text=True,
            timeout=timeout)
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{create.stdout}"
                               f"{create.stderr}")
        while not all(b"cluster_state:ok" in self.redis_info(p, "CLUSTER", "INFO")
                      for p in self.cluster_ports):
            if time.monotonic() > end:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def redis_info(self, port: int, *args: str) -> bytes:
        wire = b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                s.sendall(b"*%d\r\n" % len(args) + wire)
                return s.recv(65536)
        except OSError:
            return b""

    def stop_redis(self) -> None:
        """Kill Redis: every room's offsets, history and presence are gone with it."""
        if self.redis:
            self.redis.stop(signal.SIGKILL)

    def pause_redis(self) -> None:
        assert self.redis is not None
        self.redis.send(signal.SIGSTOP)

    def resume_redis(self) -> None:
        assert self.redis is not None
        self.redis.send(signal.SIGCONT)

    def redis_ping(self, port: int | None = None) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port or self.redis_port),
                                          timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    # -- observing -----------------------------------------------------------------------

    @staticmethod
    def wait_ready(node: Node, timeout: float = 30.0) -> None:
        """Until ``node`` answers /readyz with 200 (raises with its log if it exits)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not node.proc.alive:
                raise RuntimeError(f"{node.name} exited:\n{node.proc.tail()}")
            try:
                with urllib.request.urlopen(node.admin_url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{node.name} not ready within {timeout}s:\n{node.proc.tail()}")

    def haproxy_command(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(self.haproxy_socket))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def backends(self) -> dict[str, dict[str, str]]:
        """HAProxy's view of each node: status (UP/DOWN/...), current sessions (scur), ..."""
        text = self.haproxy_command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: r for r in rows
                if r["pxname"] == "nodes" and r["svname"] not in ("BACKEND", "FRONTEND")}

    def up(self) -> set[int]:
        """Indexes of the nodes HAProxy sends new connections to."""
        return {int(name.removeprefix("node")) for name, row in self.backends().items()
                if row["status"].startswith("UP")}

    def wait_backends(self, up: set[int], timeout: float = 30.0) -> float:
        """Wait until HAProxy routes to exactly ``up``; returns the seconds it took."""
        start = time.monotonic()
        while True:
            with contextlib.suppress(OSError):
                if self.up() == up:
                    return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"HAProxy did not see nodes {sorted(up)} up within "
                                   f"{timeout}s:\n{self.haproxy.tail() if self.haproxy else ''}")
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=3, help="wsops nodes (default 3)")
    parser.add_argument("--port", type=int, default=8765,
                        help="HAProxy's WebSocket port (default 8765; 0 = any free port)")
    parser.add_argument("--cluster", action="store_true",
                        help="a Redis Cluster (3 masters + 3 replicas) instead of one Redis")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    fleet = Fleet(nodes_count=args.nodes, port=args.port, cluster=args.cluster)
    what = "a Redis Cluster (3+3)" if args.cluster else "Redis"
    print(f"starting {what}, {args.nodes} nodes and HAProxy in {fleet.workdir} ...", flush=True)
    try:
        fleet.start()
    except BaseException:
        for proc in [fleet.redis, fleet.haproxy, *fleet.cluster_nodes,
                     *(n.proc for n in fleet.nodes)]:
            if proc is not None and proc.log.exists():
                print(f"--- {proc.name} log ---\n{proc.tail()}", file=sys.stderr)
        fleet.close()
        raise
    print(f"fleet up: clients connect to {fleet.url} (HAProxy)")
    print(f"  redis   {fleet.redis_url}")
    for node in fleet.nodes:
        print(f"  {node.name}   {node.url}   admin {node.admin_url}")
    print(f"try: wsops status --redis {fleet.redis_url}")
    print(f"     wsops drain {fleet.nodes[0].admin_url}")
    print("Ctrl-C stops the fleet.", flush=True)
    stop = False
    reported: set[str] = set()

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop:
            time.sleep(0.5)
            if stop:
                break
            procs = [fleet.redis, fleet.haproxy, *fleet.cluster_nodes,
                     *(n.proc for n in fleet.nodes)]
            dead = [p.name for p in procs
                    if p is not None and not p.alive and p.name not in reported]
            if dead:
                reported.update(dead)
                print(f"stopped by itself: {', '.join(dead)} (logs in {fleet.workdir})",
                      file=sys.stderr)
    finally:
        with contextlib.suppress(OSError):  # stdout may be a closed pipe (| head)
            print("stopping the fleet ...", flush=True)
        fleet.close()


if __name__ == "__main__":
    main()
