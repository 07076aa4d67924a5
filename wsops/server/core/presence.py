"""Who is in a room: connections per user per room (pure).

A user may hold several connections; presence events fire on the first join and the last leave.
"""

from __future__ import annotations

from collections import Counter


class PresenceCounts(dict[str, Counter[str]]):
    """room -> Counter(user -> open connections in the room); empty rooms are dropped."""

    def join(self, room: str, user: str) -> bool:
        """Count one more connection of ``user``; True if it is the user's first."""
        users = self.setdefault(room, Counter())
        users[user] += 1
        return users[user] == 1

    def leave(self, room: str, user: str) -> bool:
        """Count one connection less; True if it was the user's last (unknown: False)."""
        users = self.get(room)
        if users is None or users[user] <= 0:
            return False
        users[user] -= 1
        if users[user]:
            return False
        del users[user]
        if not users:
            del self[room]
        return True
