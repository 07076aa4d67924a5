"""Separate hosts on one machine for fault tests: network namespaces on a bridge.

Each ``Host`` is a network namespace with one veth link to a bridge in the root namespace and
its own address ``10.213.N.i/24``; the root namespace is ``.1`` on the bridge, so the test
process reaches every host. Faults are the network's, not a process's:

- ``cut(host)``: the host's link goes down (it can reach nobody and nobody reaches it);
- ``block(a, b)``: packets between two hosts vanish (a blackhole route on each side), while
  both still reach everyone else: a partition between, say, a node and its Redis.

Needs root and iproute2 (``ip``); ``available()`` says whether this machine has them. Names are
short and unique per run (interface names have at most 15 characters); ``close`` removes
everything (the caller stops the processes first).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    name: str  # the namespace
    ip: str
    link: str  # the veth's end in the root namespace (on the bridge)

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.name, *command]


class Net:
    """A bridge and the hosts on it (see the module doc)."""

    def __init__(self) -> None:
        self.tag = f"{random.randrange(16 ** 4):04x}"
        self.subnet = random.randrange(1, 250)
        self.bridge = f"wsb{self.tag}"
        self.hosts: list[Host] = []
        self._blocks: set[tuple[str, str]] = set()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"10.213.{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge (where the test's own servers listen
        for the hosts)."""
        return f"10.213.{self.subnet}.1"

    def host(self) -> Host:
        i = len(self.hosts) + 2
        host = Host(f"ws{self.tag}h{i}", f"10.213.{self.subnet}.{i}", f"ws{self.tag}v{i}")
        _ip("netns", "add", host.name)
        self.hosts.append(host)
        _ip("link", "add", host.link, "type", "veth", "peer", "name", f"ws{self.tag}p{i}")
        _ip("link", "set", f"ws{self.tag}p{i}", "netns", host.name)
        _ip("link", "set", f"ws{self.tag}p{i}", "name", "eth0", ns=host.name)
        _ip("addr", "add", f"{host.ip}/24", "dev", "eth0", ns=host.name)
        _ip("link", "set", "eth0", "up", ns=host.name)
        _ip("link", "set", "lo", "up", ns=host.name)
        _ip("link", "set", host.link, "master", self.bridge)
        _ip("link", "set", host.link, "up")
        return host

    def cut(self, host: Host) -> None:
        _ip("link", "set", host.link, "down")

    def restore(self, host: Host) -> None:
        _ip("link", "set", host.link, "up")

    def block(self, a: Host, b: Host) -> None:
        _ip("route", "add", "blackhole", f"{b.ip}/32", ns=a.name)
        _ip("route", "add", "blackhole", f"{a.ip}/32", ns=b.name)
        self._blocks.add((a.name, b.name))

    def unblock(self, a: Host, b: Host) -> None:
        _ip("route", "del", "blackhole", f"{b.ip}/32", ns=a.name)
        _ip("route", "del", "blackhole", f"{a.ip}/32", ns=b.name)
        self._blocks.discard((a.name, b.name))

    def close(self) -> None:
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True, timeout=10)
            subprocess.run(["ip", "link", "del", host.link], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=10)
        self.hosts.clear()
