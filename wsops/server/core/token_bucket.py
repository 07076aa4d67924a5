"""Token bucket rate limiting, pure (the caller passes the clock)."""

from __future__ import annotations


class TokenBucket:
    """Allows ``rate`` events per second on average and bursts of up to ``burst``."""

    __slots__ = ("burst", "rate", "strikes", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now
        self.strikes = 0

    def allow(self, now: float) -> bool:
        """Take one token if there is one. ``strikes`` counts refusals in a row."""
        tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            self.strikes = 0
            return True
        self.tokens = tokens
        self.strikes += 1
        return False
