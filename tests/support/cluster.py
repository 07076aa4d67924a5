"""A local Redis Cluster for tests: three masters and three replicas (``redis-server
--cluster-enabled yes``, joined by ``redis-cli --cluster create``) on free loopback ports in
temp dirs, stopped and removed afterwards. Tests can kill or pause one process to fail it."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import warnings

from tests.support.netns import Host
from tests.support.redisproc import RedisExited, RedisProc, redis_server_binary
from tests.support.waits import until_sync


def node_info(node: RedisProc, *args: str) -> bytes:
    wire = b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args)
    try:
        with socket.create_connection((node.address, node.port), timeout=1.0) as s:
            s.sendall(b"*%d\r\n" % len(args) + wire)
            return s.recv(65536)
    except OSError:
        return b""


def _fields(info: bytes, *names: bytes) -> str:
    """The ``name:value`` lines of an INFO reply that ``names`` asks for."""
    return ", ".join(line.decode(errors="replace") for line in info.split(b"\r\n")
                     if line.split(b":", 1)[0] in names) or repr(info[:80])


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

    def __init__(self, size: int = 6, hosts: list[Host] | None = None) -> None:
        """``hosts``: one network namespace per node (``tests.support.netns``), each on port
        7000 of its own address."""
        self.size, self.hosts = size, hosts
        self.nodes = self._new_nodes()

    def _new_nodes(self) -> list[RedisProc]:
        # Each node keeps its nodes.conf in its own temp dir (RedisProc's --dir).
        extra = ["--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
                 "--repl-diskless-sync-delay", "0"]
        if self.hosts:
            return [RedisProc(7000, extra=list(extra), host=h) for h in self.hosts]
        return [RedisProc(cluster_port(), extra=list(extra)) for _ in range(self.size)]

    @property
    def url(self) -> str:
        """The broker URL naming every node as a seed (without wsops' options)."""
        return "redis+cluster://" + ",".join(f"{n.address}:{n.port}" for n in self.nodes)

    def start(self) -> None:
        """Start the nodes and join them; a cluster not ok 30 s later is torn down and built
        again once (on fresh ports; on the same hosts with ``hosts``): a CI run once saw one
        never settle. What it looked like is a warning (in pytest's summary, pass or fail),
        and the error if the second one fails too; a failed start leaves no node running."""
        for attempt in (1, 2):
            try:
                self._create()
                until_sync(self.ok, 30.0, what="the cluster to be ok on every node")
                return
            except (AssertionError, RedisExited) as e:
                # Not ok in time, or a node that could not start (a port taken between the
                # check and its bind: the cluster bus port is in the kernel's ephemeral range).
                report = f"{e}: {self.problem()}\n{self.describe()}"
                self.close()
                if attempt == 2:
                    raise AssertionError(report) from None
                warnings.warn(f"cluster setup, attempt 1: {report}", stacklevel=2)
                self.nodes = self._new_nodes()
            except BaseException:
                self.close()
                raise

    def _create(self) -> None:
        binary = redis_server_binary()
        cli = shutil.which("redis-cli")
        assert binary is not None and cli is not None, "redis-server/redis-cli not installed"
        for node in self.nodes:
            node.start()
        subprocess.run([cli, "--cluster", "create",
                        *(f"{n.address}:{n.port}" for n in self.nodes),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)

    def ok(self) -> bool:
        """Every running node says cluster_state:ok and knows three masters with replicas."""
        return not self.problem()

    def problem(self) -> str:
        """Why the cluster is not ok yet ("" when it is)."""
        for node in self.nodes:
            if node.proc is None or node.paused:
                continue
            info = node_info(node, "CLUSTER", "INFO")
            if b"cluster_state:ok" not in info or b"cluster_size:3" not in info:
                said = _fields(info, b"cluster_state", b"cluster_size",
                               b"cluster_slots_assigned", b"cluster_known_nodes")
                return f"node {node.port} is not ok: {said}"
        masters = self.masters()
        if len(masters) != 3:
            return f"{len(masters)} masters: {[m.port for m in masters]}"
        for n in self.nodes:
            if n.proc is not None and not n.paused and n not in masters:
                info = node_info(n, "INFO", "replication")
                if b"master_link_status:up" not in info:
                    said = _fields(info, b"role", b"master_port", b"master_link_status",
                                   b"master_sync_in_progress")
                    return f"replica {n.port} not linked: {said}"
        return ""

    def describe(self) -> str:
        """Each node's CLUSTER NODES, for a failure message."""
        return "\n".join(f"node {n.port} (pid {n.proc.pid if n.proc else None}):\n"
                         + node_info(n, "CLUSTER", "NODES").decode(errors="replace")
                         for n in self.nodes)

    def masters(self) -> list[RedisProc]:
        return [n for n in self.nodes if n.proc is not None and not n.paused
                and b"role:master" in node_info(n, "INFO", "replication")]

    def failover(self, replica: RedisProc) -> None:
        """``CLUSTER FAILOVER`` on ``replica``: it catches up with its master, then takes
        over; returns once it is a master."""
        assert b"+OK" in node_info(replica, "CLUSTER", "FAILOVER")
        until_sync(lambda: replica in self.masters(), 20.0, what="the replica to take over")

    def move_slot(self, slot: int, source: RedisProc, target: RedisProc) -> None:
        """Reshard one slot: mark it importing on ``target`` and migrating on ``source``,
        MIGRATE its keys, then give it to ``target`` on every master."""
        def myid(node: RedisProc) -> str:
            return node_info(node, "CLUSTER", "MYID").split(b"\r\n")[1].decode()

        src, dst = myid(source), myid(target)
        assert b"+OK" in node_info(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", src)
        assert b"+OK" in node_info(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst)
        while True:
            reply = node_info(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "100")
            keys = [line.decode() for line in reply.split(b"\r\n")[2::2] if line]
            if not keys:
                break
            moved = node_info(source, "MIGRATE", target.address, str(target.port), "", "0",
                              "5000", "KEYS", *keys)
            assert moved.startswith((b"+OK", b"+NOKEY")), moved
        for node in [target, source, *(m for m in self.masters() if m not in (source, target))]:
            assert b"+OK" in node_info(node, "CLUSTER", "SETSLOT", str(slot), "NODE", dst)

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def replica_of(cluster: ClusterSet, master: RedisProc) -> RedisProc:
    """The node replicating ``master`` now."""
    for node in cluster.nodes:
        if node is not master and node.proc is not None and (
                b"master_host:%s\r\nmaster_port:%d\r\n" % (master.address.encode(), master.port)
                in node_info(node, "INFO", "replication")):
            return node
    raise AssertionError(f"no replica of {master.port}")


def masters_only(shards: int) -> list[RedisProc]:
    """A cluster of ``shards`` masters and no replica, slots split evenly (``CLUSTER
    ADDSLOTSRANGE`` and ``MEET``: ``redis-cli --cluster create`` wants three masters at least):
    for benchmarks of the sharded path. The caller closes the nodes."""
    nodes = [RedisProc(cluster_port(), extra=["--cluster-enabled", "yes"])
             for _ in range(shards)]
    for node in nodes:
        node.start()
    per = 16384 // shards
    for i, node in enumerate(nodes):
        last = 16383 if i == shards - 1 else (i + 1) * per - 1
        assert b"+OK" in node_info(node, "CLUSTER", "ADDSLOTSRANGE", str(i * per), str(last))
        if i:
            assert b"+OK" in node_info(node, "CLUSTER", "MEET", "127.0.0.1", str(nodes[0].port))
    until_sync(lambda: all(b"cluster_state:ok" in node_info(n, "CLUSTER", "INFO")
                           for n in nodes), 30.0, what="the cluster to be ok")
    return nodes
