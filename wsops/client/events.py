"""What the client hands to the application: states, room events and request results.

Plain frozen dataclasses so an application can match on them (``match event: case Gap(): ...``)
and compare them in tests; nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias


class ClientState(enum.Enum):
    """Where the client's connection is.

    ``CONNECTING`` until the first connection opens, ``OPEN`` while one is open, ``RECONNECTING``
    between connections after the first, ``CLOSED`` before ``connect()`` and after ``close()``
    or a refused authentication.
    """

    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Message:
    """A room message, delivered once and in offset order within an epoch."""

    room: str
    offset: int
    epoch: str
    data: Any
    ts: int
    sender: str | None = None
    """The publishing connection's user, attested by the server (the frame's ``from``; None
    from a server that predates it)."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages between two positions of a room are lost to the client.

    Emitted when the server cannot replay after a reconnect (``recovered: false``) or when a
    room's stream jumps. The app saw everything up to ``(last_offset, last_epoch)`` and will see
    everything after ``(new_offset, new_epoch)``; what lies between must be reloaded (for example
    with ``history``) or reported. Offsets of different epochs are not comparable.
    """

    room: str
    last_offset: int
    last_epoch: str
    new_offset: int
    new_epoch: str


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A user's first connection joined, or its last connection left, a subscribed room."""

    kind: Literal["join", "leave"]
    room: str
    user: str


@dataclass(frozen=True, slots=True)
class SubscriptionLost:
    """A room is no longer followed: it could not be resubscribed after a reconnect, or the
    server unsubscribed the connection.

    Only for refusals that retrying cannot fix (for example ``forbidden`` once a token lost a
    grant); transient errors (``unavailable``, ``rate_limited``, ``internal``) are retried.
    Also when the server took the connection out of the room (``code`` ``unsubscribed``,
    ``message`` the server's reason): subscribing again is the app's choice.
    """

    room: str
    code: str
    message: str


Event: TypeAlias = Message | Gap | PresenceEvent | SubscriptionLost


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """How a connection ended: the close code and reason the server sent (PROTOCOL.md, "Close
    codes"), or 1006 and no reason when it ended without a close frame."""

    code: int
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.code} ({self.reason})" if self.reason else str(self.code)


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """The reply to ``subscribe``: the room's latest position when the subscription started.

    ``recovered`` is None for a fresh subscription (no ``since`` was sent).
    """

    room: str
    offset: int
    epoch: str
    recovered: bool | None = None


@dataclass(frozen=True, slots=True)
class PublishAck:
    """The server stored a published message at ``(offset, epoch)``.

    ``local`` is true when a fleet node could not reach Redis: the message was delivered to
    that node's subscribers under an island epoch and is stored in the fleet's log (at a new
    offset) once Redis is back; it is lost if the node dies first.
    """

    room: str
    offset: int
    epoch: str
    local: bool = False
