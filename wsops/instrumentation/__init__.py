"""The instrumentation layer: ``instrument(app)`` for any aiohttp WebSocket app. It measures
(metrics, live set, runtime health, tracing) and drains; its ``AppSurface`` is the node surface
the admin listener serves for such an app.

May import the admin listener (``instrument()`` mounts it for convenience); never the server.
"""

from __future__ import annotations

from wsops.instrumentation.instrument import INSTRUMENT_KEY, instrument
from wsops.instrumentation.middleware import REFUSAL_KEY, Instrumentation, InstrumentConfig

__all__ = ["INSTRUMENT_KEY", "REFUSAL_KEY", "InstrumentConfig", "Instrumentation", "instrument"]
