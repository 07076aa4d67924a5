"""wsops Python client: asyncio, reconnects with full-jitter backoff, resumes rooms gap-free.

Usage: ``async with Client(url, token) as client``, then ``await client.subscribe(room)``,
``await client.publish(room, data)`` and ``async for event in client.events()``; see ``Client``.

A separate library: it shares only the wire format (PROTOCOL.md), the backoff math
(``wsops.backoff``) and the server API's request signing (``wsops.apisign``) with the server,
and imports nothing else of wsops. ``ApiClient`` calls a node's server API over HTTP.
"""

from __future__ import annotations

from wsops.backoff import Backoff, backoff_window, full_jitter
from wsops.client.apiclient import ApiCallError, ApiClient
from wsops.client.client import Client
from wsops.client.errors import (
    AuthError,
    ClientClosed,
    ClientError,
    ConnectTimeout,
    ProtocolViolation,
    QueueFull,
    RequestTimeout,
    ServerError,
)
from wsops.client.events import (
    ClientState,
    CloseInfo,
    Event,
    Gap,
    Message,
    PresenceEvent,
    PublishAck,
    SubscribeResult,
    SubscriptionLost,
)
from wsops.client.stream import EventStream
from wsops.client.tracker import RoomTracker

__all__ = [
    "ApiCallError",
    "ApiClient",
    "AuthError",
    "Backoff",
    "Client",
    "ClientClosed",
    "ClientError",
    "ClientState",
    "CloseInfo",
    "ConnectTimeout",
    "Event",
    "EventStream",
    "Gap",
    "Message",
    "PresenceEvent",
    "ProtocolViolation",
    "PublishAck",
    "QueueFull",
    "RequestTimeout",
    "RoomTracker",
    "ServerError",
    "SubscribeResult",
    "SubscriptionLost",
    "backoff_window",
    "full_jitter",
]
