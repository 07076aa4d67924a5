"""Orders one node gives the whole fleet (the server API's ``disconnect``), carried as
messages of a room no client can name: every node watches ``CONTROL_ROOM`` through its
broker, so an order reaches every node the way a room message does (in memory, through Redis,
through a Redis Cluster), and no other plumbing is needed.

An order is the ``data`` of a message of ``CONTROL_ROOM``: ``{"order": "disconnect",
"user": U, "code": C, "reason": R}``. A node reads one with ``parse_order`` (None for anything
else: an order of a later version is ignored, not misread).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from wsops.server.core.protocol import compact_dumps, frame_payload, valid_room

CONTROL_ROOM: Final = "$wsops:control"  # "$" is not a room character: no client can use it
assert not valid_room(CONTROL_ROOM)


@dataclass(frozen=True)
class Disconnect:
    """Close every connection of ``user`` with ``code`` and ``reason``."""

    user: str
    code: int
    reason: str


def disconnect_order(user: str, code: int, reason: str) -> bytes:
    """The ``data`` of a disconnect order (compact JSON, as a message's data is stored)."""
    return compact_dumps({"order": "disconnect", "user": user, "code": code,
                          "reason": reason}).encode()


def parse_order(frame: bytes) -> Disconnect | None:
    """The order a ``CONTROL_ROOM`` message frame carries, or None if it carries none."""
    try:
        data = json.loads(bytes(frame_payload(frame))).get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, dict) or data.get("order") != "disconnect":
        return None
    user, code, reason = data.get("user"), data.get("code"), data.get("reason")
    if (not isinstance(user, str) or not isinstance(code, int) or isinstance(code, bool)
            or not isinstance(reason, str)):
        return None
    return Disconnect(user, code, reason)
