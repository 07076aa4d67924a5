"""The admin listener: ``/healthz``, ``/readyz``, ``/metrics``, ``/admin/*``, the fleet page and
leak profiling, all served from ONE node surface (``surface.NodeSurface``) with the documents
typed once (``contract``); and the ``--workers N`` aggregator.

May import: itself and the shared helpers. Never the server, the instrumentation or the CLI:
whoever runs a node hands it a surface (``api.mount_admin``).
"""

from __future__ import annotations

from wsops.admin.listener import ADMIN_KEY, AdminListener, attach_admin

__all__ = ["ADMIN_KEY", "AdminListener", "attach_admin"]
