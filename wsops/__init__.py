"""wsops: observability and operations toolkit for WebSocket fleets."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
