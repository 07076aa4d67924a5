"""wsops: observability and operations toolkit for WebSocket fleets.

``wsops.instrument(app)`` instruments any aiohttp WebSocket app; ``wsops.server.create_app``
builds the bundled realtime server; ``wsops.client.Client`` is the Python client and
``wsops.ApiClient`` calls a node's server API from a backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wsops.version import __version__

if TYPE_CHECKING:
    from wsops.client.apiclient import ApiCallError, ApiClient
    from wsops.instrumentation.instrument import instrument
    from wsops.instrumentation.middleware import InstrumentConfig

__all__ = ["ApiCallError", "ApiClient", "InstrumentConfig", "__version__", "instrument"]


def __getattr__(name: str) -> Any:
    # Lazy: `wsops --version` and the ops commands need not load aiohttp and OpenTelemetry.
    if name in ("instrument", "InstrumentConfig"):
        import wsops.instrumentation

        return getattr(wsops.instrumentation, name)
    if name in ("ApiClient", "ApiCallError"):
        import wsops.client.apiclient

        return getattr(wsops.client.apiclient, name)
    raise AttributeError(f"module 'wsops' has no attribute {name!r}")
