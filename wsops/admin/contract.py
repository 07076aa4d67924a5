"""The admin API's documents, typed once: what ``/admin/*`` serves and what every reader reads.

The node surface (``wsops.admin.surface``) returns these; the admin endpoints serve them; the
admin client (``wsops.admin.client``), the worker aggregator, the fleet page and the CLI views
read them. ``wsops.admin.openapi`` builds the OpenAPI document from these same classes, so the
published schema cannot drift from the code. Pure: no I/O, no imports of wsops.

JSON has no NaN or infinity: every document goes through ``finite`` before it is served.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NotRequired, TypedDict

DrainState = Literal["idle", "draining", "drained", "cancelled"]


class Health(TypedDict):
    """``GET /healthz``: the process runs."""

    status: Literal["ok"]
    uptime_seconds: float


class Readiness(TypedDict):
    """``GET /readyz``: 200 with ``ready: true``, or 503 with the reasons."""

    ready: bool
    reasons: NotRequired[list[str]]


class DrainOptions(TypedDict):
    """How a drain closes connections (``POST /admin/drain`` body; each field optional)."""

    batch: int
    interval: float
    deadline: float
    code: int


class DrainStatus(TypedDict):
    """``GET /admin/drain``. ``closed``: closed gracefully in a batch; ``forced``: still open at
    the deadline and dropped (never both); ``remaining``: open now."""

    state: DrainState
    started_at: float | None
    finished_at: float | None
    total: int
    closed: int
    forced: int
    batches: int
    remaining: int


class DrainStarted(DrainStatus):
    """``POST /admin/drain`` (202). ``started`` false: a drain already ran, with its own
    options (``options`` null)."""

    started: bool
    options: DrainOptions | None
    workers_reached: NotRequired[int]


class DrainCancelled(DrainStatus):
    """``POST /admin/drain/cancel``: ``cancelled`` false when no drain was running."""

    cancelled: bool


class RoomCount(TypedDict):
    room: str
    connections: int


class Connections(TypedDict):
    """``GET /admin/connections?top=N``: open connections, per route, and the biggest rooms
    (the bundled server only)."""

    total: int
    by_route: dict[str, int]
    top_rooms: NotRequired[list[RoomCount]]


class Stats(TypedDict):
    """``GET /admin/stats``: one node's figures for ``wsops status``/``top`` and the fleet page.

    Rates and ``delivery_p99_seconds`` are over the last ``window_seconds``; the runtime fields
    are there when runtime health is on; ``rooms`` to ``hub`` come from the bundled server;
    ``workers`` from a ``--workers N`` supervisor (its figures are the workers' summed)."""

    version: str
    started_at: float
    uptime_seconds: float
    ready: bool
    not_ready_reasons: list[str]
    draining: bool
    connections: int
    connections_by_route: dict[str, int]
    messages_in_per_second: float
    messages_out_per_second: float
    delivery_p99_seconds: float | None
    window_seconds: NotRequired[float]
    messages_in_total: int
    messages_out_total: int
    drain: DrainStatus
    rss_bytes: NotRequired[float | None]
    cpu_seconds: NotRequired[float | None]
    open_fds: NotRequired[float | None]
    max_fds: NotRequired[float | None]
    loop_lag_p99_seconds: NotRequired[float | None]
    memory_per_connection_bytes: NotRequired[float | None]
    gc_collections: NotRequired[float | None]
    gc_pause_seconds: NotRequired[float | None]
    tracemalloc_traced_bytes: NotRequired[float | None]
    tracemalloc_peak_bytes: NotRequired[float | None]
    rooms: NotRequired[int]
    connections_max: NotRequired[int]
    broker: NotRequired[dict[str, Any]]
    hub: NotRequired[dict[str, Any]]
    workers: NotRequired[list[dict[str, Any]]]


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None, recursively (tuples become lists): JSON and
    the browser's parser have neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
