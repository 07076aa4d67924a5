"""The node as the server API sees it (``service.ApiBackend``): its publish path, broker,
rooms and connections."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from wsops.server.core.broker import Broker, HistoryPage, Published
from wsops.server.core.hub import Hub
from wsops.server.core.observer import Publish
from wsops.server.orders import FleetOrders

API_PUBLISHER = "api"  # how API publishes show among a room's publishers (the flow view)


class NodeBackend:
    """Serves the API's calls on one node: publishes through the node's own (observed)
    publish, so they get offsets, history, traces and metrics like any other."""

    def __init__(self, hub: Hub, broker: Broker, publish: Publish,
                 info: Callable[[], Mapping[str, object]], orders: FleetOrders) -> None:
        self.hub, self.broker, self._publish, self.info = hub, broker, publish, info
        self.orders = orders

    async def publish(self, room: str, data: bytes, traceparent: str | None,
                      tracestate: str | None = None) -> Published:
        msg = await self._publish(room, data, traceparent, None, tracestate)
        self.hub.flow.published(room, len(data), API_PUBLISHER)
        return msg

    async def presence(self, room: str) -> list[str]:
        return await self.broker.presence(room)

    async def history(self, room: str, limit: int, budget: int) -> HistoryPage:
        return await self.broker.history(room, limit, budget)

    def local_rooms(self) -> list[tuple[str, int]]:
        sizes = [(name, len(r.conns) + len(r.syncing)) for name, r in self.hub.rooms.items()]
        sizes.sort(key=lambda item: (-item[1], item[0]))
        return sizes

    async def disconnect(self, user: str | None, connection: int | None, code: int,
                         reason: str) -> int:
        if connection is not None:
            conn = self.hub.conns.get(connection)
            if conn is None or conn.closing:
                return 0
            conn.close(code, reason)
            return 1
        assert user is not None
        return await self.orders.disconnect(user, code, reason)  # every node closes its own

    async def unsubscribe(self, user: str, room: str, reason: str) -> int:
        return await self.orders.unsubscribe(user, room, reason)  # every node takes its own

    async def revoke(self, kind: str, value: str, until: float) -> int:
        return await self.orders.revoke(kind, value, until)

    async def nodes(self) -> list[dict[str, Any]]:
        nodes = await self.broker.fleet_nodes()
        return nodes or [{"id": self.broker.node_id, **self.info()}]
