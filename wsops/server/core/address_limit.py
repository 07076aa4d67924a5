"""Per-address connection limit: live connections counted by the peer's IP address.

Behind a load balancer or a proxy every connection comes from the balancer's address, so the
limit is off by default (0) and only useful when clients connect directly. With ``--workers N``
each worker counts its own connections (the kernel spreads them), so one address may hold up
to N times the limit on the node.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class PerAddressLimit:
    """Counts open connections per remote address; ``limit`` 0 means unlimited."""

    __slots__ = ("counts", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("the per-address connection limit must be >= 0")
        self.limit = limit
        self.counts: dict[str, int] = {}

    def full(self, address: str | None) -> bool:
        """True when ``address`` already holds ``limit`` connections (never when unlimited)."""
        return bool(self.limit) and self.counts.get(address or "", 0) >= self.limit

    def acquire(self, address: str | None) -> str | None:
        """Count one connection from ``address``; returns the key to ``release`` (None when
        the limit is off: nothing is counted)."""
        if not self.limit:
            return None
        key = address or ""
        self.counts[key] = self.counts.get(key, 0) + 1
        return key

    def release(self, key: str) -> None:
        left = self.counts[key] - 1
        if left:
            self.counts[key] = left
        else:
            del self.counts[key]  # no entry per address ever seen: the map stays small

    @contextmanager
    def hold(self, address: str | None) -> Iterator[None]:
        """Count one connection from ``address`` for as long as the block runs."""
        key = self.acquire(address)
        try:
            yield
        finally:
            if key is not None:
                self.release(key)
