"""Which heaps ``wsops leaks`` profiles behind one admin URL (pure).

A node's admin URL is one heap, except on a ``wsops serve --workers N`` node: its admin
listener belongs to the supervisor, which holds no connection and serves no ``/admin/profile``
(asked anyway, it answers 404). Its ``/admin/stats`` lists the workers, each with the admin URL
of its own listener, bound to 127.0.0.1 of the node's host: ``wsops leaks`` profiles those
(every worker at once, or the one ``--worker`` names) when it runs on that host, and otherwise
says which commands to run there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Target:
    """One heap to profile: ``worker`` is None for a node that is one process."""

    url: str
    worker: int | None = None

    @property
    def label(self) -> str:
        return self.url if self.worker is None else f"worker {self.worker} ({self.url})"


@dataclass(frozen=True)
class Targets:
    """What to profile, and the workers left out because they are down (``skipped``)."""

    targets: list[Target]
    skipped: list[str] = field(default_factory=list)


class NoTarget(ValueError):
    """Nothing here can be profiled from this machine; the message says what to run instead."""


def on_this_host(url: str) -> bool:
    """Whether ``url`` names this machine for certain: ``localhost`` or a loopback address."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _workers(stats: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    rows = stats.get("workers")
    if not isinstance(rows, list):
        return None
    return [r for r in rows if isinstance(r, Mapping) and isinstance(r.get("worker"), int)]


def _commands(rows: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(f"wsops leaks {r['admin_url']} (worker {r['worker']})"
                     for r in rows if r.get("admin_url"))


def profile_targets(url: str, stats: Mapping[str, Any], worker: int | None = None) -> Targets:
    """The heaps behind ``url``, given its ``/admin/stats``; ``worker`` picks one worker of a
    ``--workers`` node. Raises ``NoTarget`` when none can be profiled from here."""
    rows = _workers(stats)
    if rows is None:
        if worker is not None:
            raise NoTarget(f"{url} is not a --workers node: it has no worker {worker}")
        return Targets([Target(url)])
    if worker is not None:
        rows = [r for r in rows if r["worker"] == worker]
        if not rows:
            known = ", ".join(str(r["worker"]) for r in _workers(stats) or [])
            raise NoTarget(f"{url} has no worker {worker} (its workers: {known})")
    if not on_this_host(url):
        raise NoTarget(
            f"{url} is the admin listener of a --workers node: the heaps are its workers', "
            "whose admin listeners are bound to 127.0.0.1 of the node's host. Run there: "
            f"{_commands(rows)}")
    up = [r for r in rows if r.get("up") and r.get("admin_url")]
    skipped = [f"worker {r['worker']} is down: {r.get('error') or 'no admin URL'}"
               for r in rows if r not in up]
    if not up:
        raise NoTarget(f"{url}: no worker is up to profile ({'; '.join(skipped)})")
    return Targets([Target(str(r["admin_url"]), r["worker"]) for r in up], skipped)
