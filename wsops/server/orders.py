"""Orders to the whole fleet and what a node does with them: a user disconnected, a user or a
token revoked, a user taken out of a room (the server API's ``disconnect``, ``revoke`` and
``unsubscribe``).

Orders travel as messages of ``CONTROL_ROOM`` (``wsops.server.core.control``), which every
node watches through its broker. Revocations are also kept by the broker (in Redis for a
fleet), so a node started later, or cut off when one was given, reads them: at start and every
``REFRESH`` seconds. Each node checks its copy at every upgrade.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from wsops.server.core.broker import Broker, BrokerUnavailable, Published
from wsops.server.core.control import (
    CONTROL_ROOM,
    Revoke,
    Unsubscribe,
    disconnect_order,
    origin_of,
    parse_order,
    revoke_order,
    unsubscribe_order,
)
from wsops.server.core.hub import Hub
from wsops.server.core.identity import Identity
from wsops.server.core.protocol import Close
from wsops.server.core.revocations import REFRESH, Revocations
from wsops.server.endpoint import Endpoint

log = logging.getLogger(__name__)
REVOKED_REASON = "token revoked"


class FleetOrders:
    """This node's side of the fleet's orders."""

    def __init__(self, hub: Hub, broker: Broker, endpoint: Endpoint) -> None:
        self.hub, self.broker, self.endpoint = hub, broker, endpoint
        self.revocations = Revocations()
        self._leaving: set[asyncio.Task[Any]] = set()  # broker sides of unsubscribes
        # The sender of this node's orders: it applies them itself before sending them, and
        # skips them when they come back (a user back in the meantime is not hit twice).
        self.origin = f"$node:{secrets.token_hex(8)}"

    async def start(self) -> None:
        """Watch the orders and read the revocations in force (call after the broker's start)."""
        self.hub.on_control = self.on_control
        await self.broker.watch(CONTROL_ROOM)
        await self.refresh()

    async def refresh(self) -> None:
        try:
            self.revocations.merge(await self.broker.revocations(), time.time())
        except (BrokerUnavailable, OSError, TimeoutError) as exc:
            log.warning("cannot read the fleet's revocations now: %s", exc)

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            self.revocations.prune(time.time())
            await self.refresh()

    def revoked_until(self, identity: Identity) -> float | None:
        """Until when ``identity``'s user or token is revoked (None: it is not)."""
        if identity.anonymous or not self.revocations.entries:
            return None
        return self.revocations.until(identity.user, identity.jti, time.time())

    # -- giving orders (the server API) ------------------------------------------------------

    async def disconnect(self, user: str, code: int, reason: str) -> int:
        """Close ``user``'s connections here now and tell every other node; how many here."""
        closed = self.close_user(user, code, reason)
        await self.broker.publish(CONTROL_ROOM, disconnect_order(user, code, reason), None,
                                  self.origin)
        return closed

    async def unsubscribe(self, user: str, room: str, reason: str) -> int:
        """Take ``user``'s connections out of ``room`` here now and tell every other node;
        how many here."""
        taken = self.unsubscribe_user(user, room, reason)
        await self.broker.publish(CONTROL_ROOM, unsubscribe_order(user, room, reason), None,
                                  self.origin)
        return taken

    async def revoke(self, kind: str, value: str, until: float) -> int:
        """Revoke until ``until`` everywhere: kept by the broker, told to every node, its
        connections here closed now (how many). OverflowError when the list is full."""
        self.revocations.add(kind, value, until, time.time())
        await self.broker.revoke(kind, value, until)
        closed = self._close_revoked(kind, value)
        await self.broker.publish(CONTROL_ROOM, revoke_order(kind, value, until), None,
                                  self.origin)
        return closed

    # -- taking orders -------------------------------------------------------------------------

    def on_control(self, msg: Published) -> None:
        if origin_of(msg.frame) == self.origin:
            return  # applied when it was given
        order = parse_order(msg.frame)
        if isinstance(order, Revoke):
            try:
                self.revocations.add(order.kind, order.value, order.until, time.time())
            except (OverflowError, ValueError) as exc:
                log.warning("revocation not kept: %s", exc)
            self._close_revoked(order.kind, order.value)
        elif isinstance(order, Unsubscribe):
            self.unsubscribe_user(order.user, order.room, order.reason)
        elif order is not None:
            self.close_user(order.user, order.code, order.reason)

    def close_user(self, user: str, code: int, reason: str) -> int:
        """Close this node's connections of ``user``; how many were open."""
        closed = 0
        for conn in [c for c in self.hub.conns.values() if c.user == user and not c.closing]:
            conn.close(code, reason)
            closed += 1
        if closed:
            log.info("closed %d connection(s) of user %r: %s (%d)", closed, user, reason, code)
        return closed

    def unsubscribe_user(self, user: str, room: str, reason: str) -> int:
        """Take this node's connections of ``user`` out of ``room`` (each told with an
        ``unsubscribed`` event); how many were in it."""
        taken = 0
        members = self.hub.rooms.get(room)
        # its subscribers, and those still joining it (taken out once their subscribe is done)
        conns = [*members.conns, *members.syncing] if members is not None else []
        for conn in conns:
            ws = self.endpoint.sockets.get(conn.id) if conn.user == user else None
            session = ws.session if ws is not None else None
            if session is None:
                continue
            broker_side = session.unsubscribed(room, reason)
            if broker_side is not None:
                taken += 1
                task = asyncio.get_running_loop().create_task(broker_side)
                self._leaving.add(task)
                task.add_done_callback(self._left)
            elif session.unsubscribe_pending(room, reason):
                taken += 1
        if taken:
            log.info("took %d connection(s) of user %r out of room %r: %s", taken, user, room,
                     reason)
        return taken

    def _left(self, task: asyncio.Task[Any]) -> None:
        self._leaving.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("leaving a room after an unsubscribe failed: %r", task.exception())

    def _close_revoked(self, kind: str, value: str) -> int:
        if kind == "user":
            return self.close_user(value, Close.POLICY, REVOKED_REASON)
        closed = 0
        for ws in list(self.endpoint.sockets.values()):
            session, conn = ws.session, ws.conn
            if (session is not None and conn is not None and not conn.closing
                    and session.identity.jti == value):
                conn.close(Close.POLICY, REVOKED_REASON)
                closed += 1
        return closed
