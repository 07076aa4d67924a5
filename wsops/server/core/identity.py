"""Who a connection is (from its token) and which rooms it may use."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is and which rooms it may use."""

    user: str
    rooms: tuple[str, ...]
    expires_at: float | None = None
    anonymous: bool = False
    jti: str | None = None  # the token's id, when it has one (revocable on its own)

    def may_use(self, room: str) -> bool:
        for pattern in self.rooms:
            if pattern == room or (pattern.endswith("*") and room.startswith(pattern[:-1])):
                return True
        return False
