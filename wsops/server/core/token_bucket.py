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

    def allow(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are that many, else none. ``strikes`` counts refusals
        in a row."""
        tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if tokens >= n:
            self.tokens = tokens - n
            self.strikes = 0
            return True
        self.tokens = tokens
        self.strikes += 1
        return False
