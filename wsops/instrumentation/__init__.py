"""The instrumentation layer: ``instrument(app)`` for any aiohttp WebSocket app."""

from __future__ import annotations

from wsops.instrumentation.middleware import (
    INSTRUMENT_KEY,
    REFUSAL_KEY,
    Instrumentation,
    InstrumentConfig,
    instrument,
)

__all__ = ["INSTRUMENT_KEY", "REFUSAL_KEY", "InstrumentConfig", "Instrumentation", "instrument"]
