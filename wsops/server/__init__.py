"""The bundled realtime server."""

from __future__ import annotations

from wsops.server.app import NODE_KEY, Node, create_app, running

__all__ = ["NODE_KEY", "Node", "create_app", "running"]
