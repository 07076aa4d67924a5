"""Revoked users and tokens (the server API's ``revoke``), each until a time; no I/O.

A node keeps the fleet's list in memory (loaded from the broker at start and every
``REFRESH`` seconds, and told of each new entry by a fleet order) and checks it at every
upgrade. An entry past its time is dropped; the list is bounded (``MAX_REVOCATIONS``): past it
a new entry is refused (OverflowError), an entry is never dropped early to make room.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

KINDS: Final = ("user", "jti")
MAX_REVOCATIONS: Final = 100_000
MAX_SECONDS: Final = 366 * 86400.0  # a revocation lasts at most a year
REFRESH: Final = 30.0  # seconds between two loads of the fleet's list from the broker


class Revocations:
    """``(kind, value) -> until`` (Unix seconds)."""

    def __init__(self, limit: int = MAX_REVOCATIONS) -> None:
        self.limit = limit
        self.entries: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, kind: str, value: str, until: float, now: float) -> None:
        """Revoke ``kind`` ``value`` until ``until`` (a later one of two entries wins)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        if until <= now:
            return
        key = (kind, value)
        if key not in self.entries and len(self.entries) >= self.limit:
            self.prune(now)
            if len(self.entries) >= self.limit:
                raise OverflowError(f"{self.limit} revocations in force: no room for another "
                                    "until one expires")
        self.entries[key] = max(until, self.entries.get(key, 0.0))

    def merge(self, items: Iterable[tuple[str, str, float]], now: float) -> None:
        """Entries read from the broker (kinds this version does not know are skipped)."""
        for kind, value, until in items:
            if kind in KINDS:
                try:
                    self.add(kind, value, until, now)
                except OverflowError:
                    return

    def until(self, user: str, jti: str | None, now: float) -> float | None:
        """Until when ``user`` (or the token ``jti``) is revoked, or None."""
        keys = [("user", user)] if jti is None else [("user", user), ("jti", jti)]
        for key in keys:
            found = self.entries.get(key)
            if found is not None:
                if found > now:
                    return found
                del self.entries[key]
        return None

    def prune(self, now: float) -> int:
        expired = [k for k, until in self.entries.items() if until <= now]
        for key in expired:
            del self.entries[key]
        return len(expired)
