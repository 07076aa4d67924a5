"""wsops: observability and operations toolkit for WebSocket fleets.

``wsops.instrument(app)`` instruments any aiohttp WebSocket app; ``wsops.server.create_app``
builds the bundled realtime server; ``wsops.client.Client`` is the Python client,
``wsops.ApiClient`` calls a node's server API from a backend and ``wsops.Publisher`` (or
``wsops.SyncPublisher``) publishes into a Redis fleet without a socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wsops.version import __version__

if TYPE_CHECKING:
    from wsops.client.apiclient import ApiCallError, ApiClient
    from wsops.instrumentation.instrument import instrument
    from wsops.instrumentation.middleware import InstrumentConfig
    from wsops.server.publisher import Publisher, PublishError, Receipt
    from wsops.server.syncpublisher import SyncPublisher

__all__ = ["ApiCallError", "ApiClient", "InstrumentConfig", "PublishError", "Publisher",
           "Receipt", "SyncPublisher", "__version__", "instrument"]


def __getattr__(name: str) -> Any:
    # Lazy: `wsops --version` and the ops commands need not load aiohttp and OpenTelemetry.
    if name in ("instrument", "InstrumentConfig"):
        import wsops.instrumentation

        return getattr(wsops.instrumentation, name)
    if name in ("ApiClient", "ApiCallError"):
        import wsops.client.apiclient

        return getattr(wsops.client.apiclient, name)
    if name in ("Publisher", "PublishError", "Receipt"):
        import wsops.server.publisher

        return getattr(wsops.server.publisher, name)
    if name == "SyncPublisher":
        import wsops.server.syncpublisher

        return wsops.server.syncpublisher.SyncPublisher
    raise AttributeError(f"module 'wsops' has no attribute {name!r}")
