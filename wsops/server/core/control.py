"""Orders one node gives the whole fleet (the server API's ``disconnect``), carried as
messages of a room no client can name: every node watches ``CONTROL_ROOM`` through its
broker, so an order reaches every node the way a room message does (in memory, through Redis,
through a Redis Cluster), and no other plumbing is needed.

An order is the ``data`` of a message of ``CONTROL_ROOM``: ``{"order": "disconnect",
"user": U, "code": C, "reason": R}`` or ``{"order": "revoke", "kind": "user"|"jti",
"value": V, "until": UNIX_SECONDS}`` or ``{"order": "unsubscribe", "user": U, "room": R,
"reason": R}``. A node reads one with ``parse_order`` (None for anything
else: an order of a later version is ignored, not misread). The message's sender (``from``)
is the giving node's own id (``origin_of``): it has applied the order already.
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


@dataclass(frozen=True)
class Revoke:
    """Refuse ``kind`` (``user`` or ``jti``) ``value`` until ``until`` (Unix seconds), and
    close its connections now."""

    kind: str
    value: str
    until: float


@dataclass(frozen=True)
class Unsubscribe:
    """Take every connection of ``user`` out of ``room``, telling it ``reason``."""

    user: str
    room: str
    reason: str


def unsubscribe_order(user: str, room: str, reason: str) -> bytes:
    """The ``data`` of an unsubscribe order."""
    return compact_dumps({"order": "unsubscribe", "user": user, "room": room,
                          "reason": reason}).encode()


def disconnect_order(user: str, code: int, reason: str) -> bytes:
    """The ``data`` of a disconnect order (compact JSON, as a message's data is stored)."""
    return compact_dumps({"order": "disconnect", "user": user, "code": code,
                          "reason": reason}).encode()


def revoke_order(kind: str, value: str, until: float) -> bytes:
    """The ``data`` of a revoke order."""
    return compact_dumps({"order": "revoke", "kind": kind, "value": value,
                          "until": until}).encode()


def origin_of(frame: bytes) -> str | None:
    """Who gave the order a ``CONTROL_ROOM`` message frame carries: the message's sender
    (``from``), which a node sets to an id of its own so it can skip its own orders."""
    try:
        sender = json.loads(bytes(frame_payload(frame))).get("from")
    except (ValueError, AttributeError):
        return None
    return sender if isinstance(sender, str) else None


def parse_order(frame: bytes) -> Disconnect | Revoke | Unsubscribe | None:
    """The order a ``CONTROL_ROOM`` message frame carries, or None if it carries none."""
    try:
        data = json.loads(bytes(frame_payload(frame))).get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("order") == "revoke":
        kind, value, until = data.get("kind"), data.get("value"), data.get("until")
        if (isinstance(kind, str) and isinstance(value, str)
                and isinstance(until, int | float) and not isinstance(until, bool)):
            return Revoke(kind, value, float(until))
        return None
    if data.get("order") == "unsubscribe":
        fields = (data.get("user"), data.get("room"), data.get("reason"))
        if all(isinstance(f, str) for f in fields) and valid_room(fields[1]):
            return Unsubscribe(*fields)  # type: ignore[arg-type]
        return None
    if data.get("order") != "disconnect":
        return None
    user, code, reason = data.get("user"), data.get("code"), data.get("reason")
    if (not isinstance(user, str) or not isinstance(code, int) or isinstance(code, bool)
            or not isinstance(reason, str)):
        return None
    return Disconnect(user, code, reason)
