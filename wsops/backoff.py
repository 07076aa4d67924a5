"""Reconnect delays: exponential backoff with full jitter.

``delay = uniform(0, min(cap, base * 2**attempt))`` ("full jitter", as in the AWS architecture
blog's comparison): spreading reconnects uniformly over the whole window keeps a fleet of clients
that lost the same node from stampeding back in lockstep. Pure: the random source is injected so
tests can pin it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Final

DEFAULT_BASE: Final = 0.2
DEFAULT_CAP: Final = 10.0

RECONNECT_HINT_CAP: Final = 60.0
"""The longest reconnect window a server's hint can ask for (seconds): a misconfigured server
cannot park its clients for longer."""
_HINT = re.compile(r"(?:^|[\s;,])reconnect=(\d{1,9})(?:ms)?(?=$|[\s;,])")

# The exponent is clamped so ``2**attempt`` stays a small float however long an outage lasts.
_MAX_EXPONENT: Final = 62

Uniform = Callable[[float, float], float]
"""A random source like ``random.uniform``: a float in ``[low, high]``."""


def backoff_window(attempt: int, base: float, cap: float) -> float:
    """The upper bound of the delay before retry number ``attempt`` (0 for the first retry)."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    return min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT))


def full_jitter(attempt: int, base: float, cap: float, uniform: Uniform = random.uniform) -> float:
    """A delay drawn uniformly from ``[0, backoff_window(attempt, base, cap)]``."""
    return uniform(0.0, backoff_window(attempt, base, cap))


class Backoff:
    """Counts consecutive failed connections and draws the delay before the next try.

    ``next_delay()`` draws a delay and advances the attempt; ``reset()`` starts over once a
    connection proved healthy (the client calls it when a connection stayed open long enough).
    """

    __slots__ = ("_uniform", "attempt", "base", "cap")

    def __init__(
        self,
        base: float = DEFAULT_BASE,
        cap: float = DEFAULT_CAP,
        uniform: Uniform | None = None,
    ) -> None:
        if base <= 0 or cap <= 0:
            raise ValueError("backoff base and cap must be > 0")
        if cap < base:
            raise ValueError("backoff cap must be >= base")
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._uniform: Uniform = uniform if uniform is not None else random.uniform

    def next_delay(self, retry_after: float | None = None) -> float:
        """The delay before the next try; advances the attempt counter.

        A server's ``Retry-After`` (seconds, capped at ``cap`` so a misconfigured server cannot
        park the client for hours) is waited first and the jittered delay is added on top:
        clients refused together then come back spread out, not all at ``Retry-After``.
        """
        delay = full_jitter(self.attempt, self.base, self.cap, self._uniform)
        self.attempt += 1
        if retry_after is not None and retry_after > 0:
            delay += min(retry_after, self.cap)
        return delay

    def spread(self, window: float) -> float:
        """The delay before reconnecting when the server asked its clients to spread their
        reconnects over ``window`` seconds (``reconnect_hint``): uniform over the window,
        which replaces this attempt's backoff."""
        self.attempt += 1
        return self._uniform(0.0, min(window, RECONNECT_HINT_CAP))

    def reset(self) -> None:
        """Start over from the smallest window."""
        self.attempt = 0


def hint_reason(reason: str, window: float) -> str:
    """``reason`` with a reconnect hint of ``window`` seconds (none when ``window`` is 0)."""
    return f"{reason}; reconnect={round(window * 1000)}" if window > 0 else reason


def reconnect_hint(code: int, reason: str) -> float | None:
    """The window (seconds) over which a 1012 close asks the client to spread its reconnect:
    a ``reconnect=MS`` token in the close reason (PROTOCOL.md), capped at
    ``RECONNECT_HINT_CAP``; None for any other close or a reason without the token."""
    if code != 1012:
        return None
    found = _HINT.search(reason)
    if found is None:
        return None
    return min(int(found.group(1)) / 1000, RECONNECT_HINT_CAP)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in its delta-seconds form; None otherwise.

    The HTTP-date form is ignored: servers of this protocol send seconds, and a wrong clock on
    either side would make a date meaningless anyway.
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
