"""The URL a node gives other hosts for its admin listener (the fleet registry's ``admin_url``).

``--admin-advertise-url`` when set. Otherwise ``http://HOST:PORT`` with the bound host, except
that a wildcard host (``0.0.0.0``, ``::``), which no other host can connect to, becomes a
routable address of this machine: the address this host's name resolves to, else the source
address of the default route, else the first address of an interface that is up. None of them
loopback or link-local; loopback only when the machine has nothing else (logged).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import socket
from collections.abc import Iterable, Iterator

import psutil  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT = 2.0
"""Seconds the host name's lookup may take (a DNS query when /etc/hosts does not have it)."""
_PROBES: dict[int, str] = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}
"""Documentation addresses (RFC 5737, RFC 3849): connecting a UDP socket sends no packet."""


def is_wildcard(host: str) -> bool:
    """A bind address meaning every interface (``""``, ``0.0.0.0``, ``::``)."""
    try:
        return not host or ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _usable(address: str, families: tuple[int, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    return (family in families and not ip.is_loopback and not ip.is_link_local
            and not ip.is_unspecified and not ip.is_multicast)


def _by_host_name(families: tuple[int, ...]) -> list[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [str(sockaddr[0]) for family, *_, sockaddr in infos if family in families]


def _by_default_route(families: tuple[int, ...]) -> Iterator[str]:
    for family in families:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((_PROBES[family], 9))
                yield str(s.getsockname()[0])
        except OSError:
            continue


def _by_interface(families: tuple[int, ...]) -> Iterator[str]:
    up = {name for name, st in psutil.net_if_stats().items() if st.isup}
    for name, addrs in psutil.net_if_addrs().items():
        if name in up:
            yield from (str(a.address) for a in addrs if a.family in families)


def routable_address(families: tuple[int, ...], named: Iterable[str] = ()) -> str | None:
    """A non-loopback address of this machine in one of ``families``: the first of ``named``
    (the host name's addresses) that is usable, else of the default route, else of an
    interface that is up."""
    for address in itertools.chain(named, _by_default_route(families), _by_interface(families)):
        if _usable(address, families):
            return address.split("%", 1)[0]
    return None


async def advertised_url(host: str, port: int, configured: str | None) -> str:
    """``configured``, or ``http://host:port`` with a wildcard host made routable."""
    if configured:
        return configured.rstrip("/")
    if is_wildcard(host):
        families: tuple[int, ...] = (socket.AF_INET,) if host == "0.0.0.0" else (
            socket.AF_INET, socket.AF_INET6)  # "::" also takes IPv4 (dual stack)
        try:  # a lookup that may leave the machine: in a thread, bounded
            named = await asyncio.wait_for(asyncio.to_thread(_by_host_name, families),
                                           RESOLVE_TIMEOUT)
        except TimeoutError:
            named = []
        found = routable_address(families, named)
        if found is None:
            log.warning("admin listener on %r: no routable address found, advertising "
                        "127.0.0.1 (set --admin-advertise-url)", host)
            found = "127.0.0.1"
        host = found
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
