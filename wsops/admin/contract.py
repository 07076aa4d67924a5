"""The admin API's documents, typed once: what ``/admin/*`` serves and what every reader reads.

The node surface (``wsops.admin.surface``) returns these; the admin endpoints serve them; the
admin client (``wsops.admin.apiclient``), the worker aggregator, the fleet page and the CLI views
read them. ``wsops.admin.openapi`` builds the OpenAPI document from these same classes, so the
published schema cannot drift from the code. Pure: no I/O, no imports of wsops.

JSON has no NaN or infinity: every document goes through ``finite`` before it is served.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

DrainState = Literal["idle", "draining", "drained", "cancelled"]

MAX_TOP_ROOMS = 100
"""``/admin/connections?top=N``: N within [1, this] (outside: 400)."""
SENDABLE_CLOSE_CODES = (1000, 1001, 1008, 1011, 1012, 1013, 1014)
"""Close codes a server may send (RFC 6455 7.4); application codes 3000-4999 too."""
DRAIN_LIMITS: dict[str, tuple[float, float]] = {
    "batch": (1, 1_000_000), "interval": (0, 3600), "deadline": (0.001, 86400),
    "code": (1000, 4999), "spread": (0, 60)}
"""``POST /admin/drain``: the range of each ``DrainOptions`` field (batch and code integers)."""


DEBUG_KINDS = ("user", "room", "connection")
"""``POST /admin/debug``: what a debug switch can watch (one of them per request)."""
DEBUG_MAX_SECONDS = 3600.0
"""``POST /admin/debug``: the longest a debug switch stays on (it turns itself off)."""
DEBUG_MAX_TARGETS = 16
"""Debug targets a node keeps at once (one more: 409)."""
TAP_MAX_RATE = 200.0
"""``GET /admin/tap?rate=N``: events per second a tap may ask for (more are dropped, counted)."""
TAP_MAX_SECONDS = 3600.0
"""``GET /admin/tap?seconds=N``: the longest a tap streams."""
TAP_STATS_SECONDS = 2.0
"""A tap's stream sends a ``stats`` line this often (sent, dropped)."""


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
    spread: float


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


class BatchCloses(TypedDict):
    """Closes a drain sent in one batch: ``t`` seconds after it started (``started_at``),
    ``sent`` closes (a connection still open at the deadline was forced after its close was
    sent: it stays counted here and in ``forced``, not in ``closed``); ``batches`` is 1 unless
    a long log grouped neighbouring batches (``MAX_CLOSES_LOG``)."""

    t: float
    batches: int
    sent: int


MAX_CLOSES_LOG = 1000
"""Entries kept in a drain's log of closes (``DrainProgress.closes``). Past it, neighbouring
entries are merged in pairs and each later entry takes as many batches as the merged ones
hold: the log stays bounded, evenly coarser in time, and still adds up to every close sent."""


@dataclass
class CloseLog:
    """A drain's closes, batch by batch: ``entries`` of [t, batches, sent] (see
    ``BatchCloses``), each holding ``stride`` batches once the log has been merged."""

    entries: list[list[Any]] = field(default_factory=list)
    stride: int = 1

    def add(self, t: float, sent: int) -> None:
        last = self.entries[-1] if self.entries else None
        if last is not None and last[1] < self.stride:
            last[1] += 1
            last[2] += sent
        else:
            self.entries.append([round(t, 3), 1, sent])
        if len(self.entries) > MAX_CLOSES_LOG:
            self.entries = merged_pairs(self.entries)
            self.stride *= 2

    def as_list(self) -> list[BatchCloses]:
        return [BatchCloses(t=t, batches=n, sent=sent) for t, n, sent in self.entries]


def merged_pairs(entries: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Neighbouring entries of a log of closes merged in pairs (the first's time)."""
    return [[a[0], a[1] + b[1], a[2] + b[2]] if b is not None else list(a)
            for a, b in zip(entries[::2], [*entries[1::2], None], strict=False)]


def merge_closes(logs: Sequence[tuple[float, Sequence[BatchCloses]]]) -> list[BatchCloses]:
    """Several drains' logs of closes as one (a node's workers): ``logs`` holds each drain's
    start (a Unix time) and its log; times in the result are from the earliest start, and
    it is bounded as one drain's log is."""
    if not logs:
        return []
    first = min(start for start, _ in logs)
    entries: list[list[Any]] = sorted(
        [round(start - first + float(c["t"]), 3), int(c["batches"]), int(c["sent"])]
        for start, log in logs for c in log)
    while len(entries) > MAX_CLOSES_LOG:
        entries = merged_pairs(entries)
    return [BatchCloses(t=t, batches=n, sent=sent) for t, n, sent in entries]


class DrainProgress(DrainStatus):
    """``GET /admin/drain``: the status and the log of closes, batch by batch (what ``wsops
    drain --report`` charts); ``now``: the node's clock as it answered (Unix time), so that a
    reader on another host places the log on its own clock, not by comparing clocks."""

    closes: list[BatchCloses]
    now: float


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
    node_id: NotRequired[str]  # bundled server: its id in the fleet registry
    drain_defaults: NotRequired[DrainOptions]  # what a POST /admin/drain without a body uses
    operations: NotRequired[dict[str, int]]  # bundled server: requests served, with errors
    resumes: NotRequired[dict[str, int]]  # bundled server: resumes recovered / failed (a gap)
    tracemalloc_traced_bytes: NotRequired[float | None]
    tracemalloc_peak_bytes: NotRequired[float | None]
    rooms: NotRequired[int]
    connections_max: NotRequired[int]
    broker: NotRequired[dict[str, Any]]
    hub: NotRequired[dict[str, Any]]
    workers: NotRequired[list[dict[str, Any]]]


class ProfileState(TypedDict):
    """``GET /admin/profile``: tracemalloc as the node's profiler sees it. ``owned``: wsops
    started it (and stops it when the last session ends)."""

    tracing: bool
    frames: int
    owned: bool
    sessions: int
    tracing_seconds: float | None
    traced_bytes: int
    peak_traced_bytes: int
    tracemalloc_overhead_bytes: int


class ProfileStarted(ProfileState):
    """``POST /admin/profile/start``: the new session and its lease (capped by the node)."""

    session: str
    started: bool
    lease_seconds: float


class ProfileStopped(ProfileState):
    """``POST /admin/profile/stop``: ``stopped`` when tracing wsops had started was stopped."""

    stopped: bool


class RoomTraffic(TypedDict):
    """One room's traffic on a node since ``since`` (cumulative: rates come from two readings).
    ``msgs_in``: publishes by the node's clients; ``msgs_out``: frames written to its
    subscribers; ``publishers``: distinct users who published (counted up to a cap, then
    ``publishers_capped``); ``subscribers``: the room's connections on the node now."""

    room: str
    since: float
    msgs_in: int
    bytes_in: int
    msgs_out: int
    bytes_out: int
    publishers: int
    publishers_capped: bool
    subscribers: int


class FlowSnapshot(TypedDict):
    """``GET /admin/flow``: the busiest rooms of the node (a bounded sketch: ``tracked`` rooms
    are followed, ``forgotten`` were dropped to stay bounded since the node started)."""

    generated_at: float
    tracked: int
    forgotten: int
    rooms: list[RoomTraffic]


class DebugTarget(TypedDict):
    """One thing a node's debug switch watches, named ``kind:value`` (``user:alice``)."""

    id: str
    kind: str
    value: str
    started_at: float
    seconds_left: float


class DebugState(TypedDict):
    """``GET /admin/debug``: what is watched. A watched user's or connection's frames, both
    ways, and a watched room's requests go to the ``logger`` at DEBUG; their publishes are
    traced whatever the sample ratio when ``traced`` (the node exports spans)."""

    traced: bool
    logger: str
    targets: list[DebugTarget]


class DebugStarted(DebugState):
    """``POST /admin/debug``: the target turned on (again: its time starts over)."""

    target: DebugTarget


class DebugStopped(DebugState):
    """``POST /admin/debug/stop``: the ids turned off."""

    stopped: list[str]


class HeapSite(TypedDict):
    """Live traced memory allocated at one line or along one call path; ``traceback`` is
    ``[file, line]`` frames, most recent first."""

    key: str
    file: str
    line: int
    size: int
    count: int
    traceback: list[tuple[str, int]]


class WebSocketObjects(TypedDict):
    """WebSocket response objects alive on the heap against the open connections."""

    objects: int
    closed_objects: int
    open_connections: int
    excess: int


class ProfileSample(ProfileState):
    """``GET /admin/profile/sample``: one sample of the heap (grouped figures, never traces)."""

    time: float
    monotonic: float
    group: Literal["lineno", "traceback"]
    objects_total: int
    types: dict[str, int]
    websockets: WebSocketObjects
    checks: dict[str, float]
    rss_bytes: int
    sites_total: int
    sites: list[HeapSite]
    cost_seconds: float


class FleetNode(TypedDict):
    """One row of the fleet page: this node (``self``, its ``/admin/stats``) or a peer as its
    registry entry last said (a bounded subset of those figures)."""

    id: str
    admin_url: str | None
    self: bool
    stats: dict[str, Any] | None
    as_of: float | None
    error: str | None


class FleetSnapshot(TypedDict):
    """``GET /admin/fleet``: what the fleet page polls."""

    node_id: str
    generated_at: float
    interval: float
    fleet: bool
    registry_error: str | None
    nodes: list[FleetNode]


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
