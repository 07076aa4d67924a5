"""The bundled realtime server's asyncio layer: ``create_app``/``Node`` (app), the upgrade and
its handoff from aiohttp (endpoint, handoff), each connection as an ``asyncio.Protocol``
(wsconn), the brokers, JWT auth, the observer that turns the core's reports into metrics
(observe) and the node's admin surface (node_surface).

Holds the I/O around the sans-I/O core (``wsops.server.core``). May import the core, the
instrumentation, the admin listener, the config; never the CLI (``wsops.ops``), the node
runtime (``wsops.node``) or the client.
"""

from __future__ import annotations

from wsops.server.app import NODE_KEY, Node, create_app, running

__all__ = ["NODE_KEY", "Node", "create_app", "running"]
