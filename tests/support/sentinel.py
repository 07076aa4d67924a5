"""A Redis master, its two replicas and three Sentinels for tests: real ``redis-server``
processes on free loopback ports in temp dirs, quick to fail over (a master is down 1 s after
it stops answering), stopped and removed afterwards."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import free_port
from tests.support.redisproc import RedisProc, redis_server_binary
from tests.support.waits import until_sync

MASTER = "wsops-main"


def _ask(port: int, *args: str) -> bytes:
    """One command to a local server, its raw reply (enough to read a short answer)."""
    wire = b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
        s.sendall(b"*%d\r\n" % len(args) + wire)
        return s.recv(4096)


class SentinelSet:
    """``master`` and two ``replicas`` (RedisProc) watched by three sentinels under ``MASTER``
    (two replicas: after a failover the new master still has one, which ``WAIT 1`` needs)."""

    def __init__(self) -> None:
        quick = ["--repl-diskless-sync-delay", "0"]  # a full sync starts at once, not in 5 s
        self.master = RedisProc(extra=quick)
        self.replicas = [RedisProc(extra=[*quick, "--replicaof", "127.0.0.1",
                                          str(self.master.port)]) for _ in range(2)]
        self.dir = Path(tempfile.mkdtemp(prefix="wsops-sentinel-"))
        self.ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The broker URL (without wsops' options)."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+sentinel://{hosts}/{MASTER}"

    def start(self) -> None:
        binary = redis_server_binary()
        assert binary is not None, "redis-server is not installed"
        self.master.start()
        for replica in self.replicas:
            replica.start()
        for replica in self.replicas:
            def synced(r: RedisProc = replica) -> bool:
                return b"master_link_status:up" in _ask(r.port, "INFO", "replication")
            until_sync(synced, 10.0, what="the replica to sync with its master")
        # Until both replicas ack writes (their first acks come up to a second after the sync).
        until_sync(lambda: _ask(self.master.port, "SET", "wsops-test", "1") == b"+OK\r\n"
                   and _ask(self.master.port, "WAIT", "2", "50") == b":2\r\n",
                   10.0, what="both replicas to acknowledge writes")
        ids = {port: secrets.token_hex(20) for port in self.ports}
        for port in self.ports:
            # The replicas and the other sentinels are declared as a running sentinel would
            # have written them: discovering them takes ~10 s (INFO and hello periods).
            known = "".join(
                f"sentinel known-replica {MASTER} 127.0.0.1 {r.port}\n" for r in self.replicas)
            known += "".join(f"sentinel known-sentinel {MASTER} 127.0.0.1 {p} {ids[p]}\n"
                             for p in self.ports if p != port)
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\nsentinel myid {ids[port]}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 2000\n"
                f"sentinel parallel-syncs {MASTER} 1\n{known}")
            self.sentinels.append(subprocess.Popen(
                [binary, str(conf), "--sentinel", "--loglevel", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port, proc in zip(self.ports, self.sentinels, strict=True):
            # A failover needs a quorum that knows the replica. 30 s: a sentinel took over 10
            # on a loaded CI machine; one that exited (its port taken meanwhile) says so.
            def watching(port: int = port, proc: subprocess.Popen[bytes] = proc) -> bool:
                return self.master_port(port) == self.master.port or proc.poll() is not None

            def sees_replicas(port: int = port) -> bool:
                return _ask(port, "SENTINEL", "replicas", MASTER).startswith(b"*2\r\n")

            def sees_sentinels(port: int = port) -> bool:
                return _ask(port, "SENTINEL", "sentinels", MASTER).startswith(b"*2\r\n")

            until_sync(watching, 30.0, what=f"sentinel {port} to watch the master")
            assert proc.poll() is None, f"sentinel {port} exited with {proc.returncode}"
            until_sync(sees_replicas, 20.0, what=f"sentinel {port} to see the replicas")
            until_sync(sees_sentinels, 20.0, what=f"sentinel {port} to see the other two")

    def master_port(self, sentinel_port: int | None = None) -> int | None:
        """The master's port as one sentinel names it now (None if it cannot say)."""
        try:
            reply = _ask(sentinel_port or self.ports[0], "SENTINEL",
                         "get-master-addr-by-name", MASTER)
        except OSError:
            return None
        lines = reply.split(b"\r\n")
        return int(lines[4]) if reply.startswith(b"*2") and len(lines) > 4 else None

    def wait_failover(self, within: float = 20.0) -> RedisProc:
        """Until every sentinel names one of the replicas as master, that replica says it is,
        and the other replica follows it; returns the new master."""
        ports = {r.port: r for r in self.replicas}

        def named() -> int | None:
            seen = {self.master_port(p) for p in self.ports}
            return seen.pop() if len(seen) == 1 and seen <= set(ports) else None

        new = ports[until_sync(named, within, what="the sentinels to promote a replica")]
        until_sync(lambda: b"role:master" in _ask(new.port, "INFO", "replication"),
                   within, what="the replica to become master")
        [other] = [r for r in self.replicas if r is not new]
        until_sync(lambda: f"master_port:{new.port}".encode() in _ask(other.port, "INFO",
                                                                      "replication"),
                   within, what="the other replica to follow the new master")
        return new

    def close(self) -> None:
        for proc in self.sentinels:
            proc.kill()
        for proc in self.sentinels:
            proc.wait(10)
        self.master.close()
        for replica in self.replicas:
            replica.close()
        shutil.rmtree(self.dir, ignore_errors=True)
