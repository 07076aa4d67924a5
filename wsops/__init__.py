"""wsops: observability and operations toolkit for WebSocket fleets.

``wsops.instrument(app)`` instruments any aiohttp WebSocket app; ``wsops.server.create_app``
builds the bundled realtime server; ``wsops.client.Client`` is the Python client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from wsops.instrumentation.middleware import InstrumentConfig, instrument

__all__ = ["InstrumentConfig", "__version__", "instrument"]


def __getattr__(name: str) -> Any:
    # Lazy: `wsops --version` and the ops commands need not load aiohttp and OpenTelemetry.
    if name in ("instrument", "InstrumentConfig"):
        from wsops.instrumentation import middleware

        return getattr(middleware, name)
    raise AttributeError(f"module 'wsops' has no attribute {name!r}")
