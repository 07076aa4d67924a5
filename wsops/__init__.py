"""wsops: observability and operations toolkit for WebSocket fleets.

``wsops.instrument(app)`` instruments any aiohttp WebSocket app; ``wsops.server.create_app``
builds the bundled realtime server; ``wsops.client.Client`` is the Python client.
"""

from __future__ import annotations

__version__ = "0.1.0"

from wsops.instrumentation.middleware import InstrumentConfig, instrument

__all__ = ["InstrumentConfig", "__version__", "instrument"]
