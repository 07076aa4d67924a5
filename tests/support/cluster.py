"""A local Redis Cluster for tests: three masters and three replicas (``redis-server
--cluster-enabled yes``, joined by ``redis-cli --cluster create``) on free loopback ports in
temp dirs, stopped and removed afterwards. Tests can kill or pause one process to fail it."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess

from tests.support.redisproc import RedisProc, redis_server_binary
from tests.support.waits import until_sync


def _info(port: int, *args: str) -> bytes:
    wire = b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"*%d\r\n" % len(args) + wire)
            return s.recv(65536)
    except OSError:
        return b""


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too and below 65536 (an ephemeral
    port from the kernel often is not)."""
    for _ in range(1000):
        port = random.randint(20000, 50000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise OSError("no free port pair for a cluster node")


class ClusterSet:
    """``nodes``: six RedisProc, the first three masters after ``start`` (``masters()`` says
    which are now)."""

    def __init__(self, size: int = 6) -> None:
        # Each node keeps its nodes.conf in its own temp dir (RedisProc's --dir).
        self.nodes = [RedisProc(cluster_port(), extra=[
            "--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
            "--repl-diskless-sync-delay", "0"]) for _ in range(size)]

    @property
    def url(self) -> str:
        """The broker URL naming every node as a seed (without wsops' options)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        binary = redis_server_binary()
        cli = shutil.which("redis-cli")
        assert binary is not None and cli is not None, "redis-server/redis-cli not installed"
        for node in self.nodes:
            node.start()
        subprocess.run([cli, "--cluster", "create",
                        *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        until_sync(self.ok, 30.0, what="the cluster to be ok on every node")

    def ok(self) -> bool:
        """Every running node says cluster_state:ok and knows three masters with replicas."""
        for node in self.nodes:
            if node.proc is None or node.paused:
                continue
            info = _info(node.port, "CLUSTER", "INFO")
            if b"cluster_state:ok" not in info or b"cluster_size:3" not in info:
                return False
        return len(self.masters()) == 3 and all(
            b"master_link_status:up" in _info(n.port, "INFO", "replication")
            for n in self.nodes if n.proc is not None and not n.paused and n not in self.masters())

    def masters(self) -> list[RedisProc]:
        return [n for n in self.nodes if n.proc is not None and not n.paused
                and b"role:master" in _info(n.port, "INFO", "replication")]

    def failover(self, replica: RedisProc) -> None:
        """``CLUSTER FAILOVER`` on ``replica``: it catches up with its master, then takes
        over; returns once it is a master."""
        assert b"+OK" in _info(replica.port, "CLUSTER", "FAILOVER")
        until_sync(lambda: replica in self.masters(), 20.0, what="the replica to take over")

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def replica_of(cluster: ClusterSet, master: RedisProc) -> RedisProc:
    """The node replicating ``master`` now."""
    for node in cluster.nodes:
        if node is not master and node.proc is not None and (
                b"master_port:%d\r\n" % master.port in _info(node.port, "INFO", "replication")):
            return node
    raise AssertionError(f"no replica of {master.port}")
