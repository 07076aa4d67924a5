"""``/admin/profile/*``: profile memory leaks of a live node, for any instrumented app.

``start`` turns tracemalloc on (if it is off, remembering that wsops did), ``sample`` returns
grouped figures (traced memory by site, object counts by type, WebSocket and app leak checks,
RSS), ``stop`` turns tracemalloc off again only if wsops turned it on. The analysis across
samples is the client's (``wsops leaks``, ``wsops.ops.leakcheck``); the node only counts.

tracemalloc slows allocation-heavy code 6-10x at 1 frame and much more at 25 frames, so a
profiling session is leased: every start or sample renews it, and when every lease ran out
(a client killed mid-run), tracing wsops started is stopped anyway. Sessions and leases are
bounded: at most ``MAX_SESSIONS`` sessions at once (one more start gets 409, saying how to end
one), a lease of at most ``MAX_LEASE`` seconds (a longer one asked for is granted that long,
and the answer's ``lease_seconds`` says so). More than one session, because the way to profile
a node that started without tracing is to start a session ahead, let buffers turn over, then
run ``wsops leaks`` (a second session) against it.

A sample reads RSS after ``malloc_trim(0)`` (glibc): free heap memory the allocator kept goes
back to the system first, so RSS says what the process holds. Without it, freed chunks kept by
glibc (tracemalloc's own churn, the sample's own lists built in a worker thread's arena) read as
steady growth of 1-1.5 MiB/min on a healthy node over a 3-minute window, where traced memory is
flat: a false "native leak" hint.
"""

from __future__ import annotations

import _tracemalloc
import asyncio
import ctypes
import ctypes.util
import functools
import gc
import logging
import secrets
import time
import tracemalloc
from typing import TYPE_CHECKING, Any

import psutil  # type: ignore[import-untyped]
from aiohttp import web

from wsops.admin import heap
from wsops.admin.http import int_query, json_response, number_field, read_body

if TYPE_CHECKING:
    from wsops.admin.listener import AdminListener
    from wsops.admin.surface import NodeSurface

log = logging.getLogger(__name__)
MAX_FRAMES = 50
MAX_TYPES = 500
DEFAULT_LEASE = 300.0
MAX_LEASE = 3600.0
MAX_SESSIONS = 4
# Sites allocating in these files are the profiler's own bookkeeping.
_EXCLUDED = (tracemalloc.__file__, heap.__file__, __file__)


class Profiler:
    """tracemalloc state for one node: who started it, open sessions, previous peaks."""

    def __init__(self, surface: NodeSurface) -> None:
        self.surface = surface
        self.owned = False  # tracemalloc was started by wsops (and so wsops stops it)
        self.started_at: float | None = None
        self.sessions: dict[str, tuple[float, float]] = {}  # id -> (lease, expiry monotonic)
        self._site_peak: dict[str, dict[str, int]] = {g: {} for g in heap.GROUPS}
        self._type_peak: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._proc: Any = psutil.Process()

    # -- state -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        tracing = tracemalloc.is_tracing()
        if self.owned and not tracing:  # someone else stopped it
            self.owned = False
        traced, peak = tracemalloc.get_traced_memory() if tracing else (0, 0)
        return {
            "tracing": tracing,
            "frames": tracemalloc.get_traceback_limit() if tracing else 0,
            "owned": self.owned,
            "sessions": len(self.sessions),
            "tracing_seconds": (time.monotonic() - self.started_at
                                if self.owned and self.started_at is not None else None),
            "traced_bytes": traced,
            "peak_traced_bytes": peak,
            "tracemalloc_overhead_bytes": tracemalloc.get_tracemalloc_memory(),
        }

    def start(self, frames: int, lease: float) -> dict[str, Any]:
        """A new session (tracing turned on if it is off); 409 when ``MAX_SESSIONS`` are open."""
        if len(self.sessions) >= MAX_SESSIONS:
            ends = min(expiry for _, expiry in self.sessions.values()) - time.monotonic()
            raise web.HTTPConflict(text=(
                f"{len(self.sessions)} profiling sessions are open, the most this node allows: "
                f"end one with POST /admin/profile/stop {{\"session\": ID}} (or all of them "
                f"with {{}}), or wait for the first lease to run out (in {max(0.0, ends):.0f} s "
                f"unless it is renewed)\n"))
        lease = min(lease, MAX_LEASE)
        started = False
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)
            self.owned = started = True
            self.started_at = time.monotonic()
            self._reset_peaks()
        session = secrets.token_hex(8)
        self.sessions[session] = (lease, time.monotonic() + lease)
        self._arm()
        return {**self.state(), "session": session, "started": started, "lease_seconds": lease}

    def stop(self, session: str | None) -> dict[str, Any]:
        """End ``session`` (every session when None); stop tracing if wsops started it and no
        other session is open."""
        if session is None:
            self.sessions.clear()
        else:
            self.sessions.pop(session, None)
        stopped = self._stop_if_idle()
        return {**self.state(), "stopped": stopped}

    def _stop_if_idle(self) -> bool:
        if self.sessions or not self.owned:
            return False
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        self.owned = False
        self.started_at = None
        self._reset_peaks()
        return True

    def _reset_peaks(self) -> None:
        self._site_peak = {g: {} for g in heap.GROUPS}
        self._type_peak = {}

    def renew(self, session: str | None) -> None:
        """A client still there: its lease runs from now again."""
        if session is not None and session in self.sessions:
            lease, _ = self.sessions[session]
            self.sessions[session] = (lease, time.monotonic() + lease)
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.sessions:
            first = min(expiry for _, expiry in self.sessions.values())
            delay = max(0.0, first - time.monotonic()) + 0.05
            self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        for session in [s for s, (_, expiry) in self.sessions.items() if expiry <= now]:
            del self.sessions[session]
        self._stop_if_idle()
        self._arm()

    def close(self) -> None:
        """The node stops: leave tracemalloc as we found it."""
        self.sessions.clear()
        self._stop_if_idle()
        if self._timer is not None:
            self._timer.cancel()

    # -- sampling ----------------------------------------------------------------------------

    async def sample(self, top: int, group: str, types: int) -> dict[str, Any]:
        """One sample; concurrent requests wait in turn so the node pays for one at a time."""
        async with self._lock:
            began = time.perf_counter()
            out = self._objects(types)  # on the loop: app checks and finalizers need it
            sites, total = await asyncio.to_thread(self._sites, top, group)
            out.update({
                "time": time.time(),
                "monotonic": time.monotonic(),
                **self.state(),
                "group": group,
                "rss_bytes": self._rss(),
                "sites_total": total,
                "sites": sites,
                "cost_seconds": round(time.perf_counter() - began, 4),
            })
            return out

    def _rss(self) -> int:
        trim = _malloc_trim()
        if trim is not None:
            trim(0)
        return int(self._proc.memory_info().rss)

    def _objects(self, top: int) -> dict[str, Any]:
        checks = self.surface.leak_checks()
        # Frozen objects (gc.freeze: wsops serve's GC policy) are invisible to get_objects():
        # counted with the rest, and frozen again after.
        frozen = gc.get_freeze_count()
        if frozen:
            gc.unfreeze()
        gc.collect()
        objects = gc.get_objects()
        if frozen:
            gc.freeze()
        try:
            by_type, by_name = heap.count_types(objects)
            ws_types = {t for t in by_type if issubclass(t, web.WebSocketResponse)
                        or getattr(t, "wsops_connection", False)}
            ws_objects = [o for o in objects if type(o) in ws_types] if ws_types else []
        finally:
            del objects  # the list holds every object alive: drop it now
        open_conns = self.surface.open_connections()
        closed = sum(1 for ws in ws_objects if ws.closed)
        del ws_objects
        names = heap.select(by_name, self._type_peak, top)
        self._type_peak = heap.new_peak(by_name, self._type_peak)
        n_ws = sum(n for t, n in by_type.items() if t in ws_types)
        return {
            "objects_total": sum(by_name.values()),
            "types": {name: by_name[name] for name in names},
            "websockets": {"objects": n_ws, "closed_objects": closed,
                           "open_connections": open_conns, "excess": n_ws - open_conns},
            "checks": checks,
        }

    def _sites(self, top: int, group: str) -> tuple[list[dict[str, Any]], int]:
        if not tracemalloc.is_tracing():
            return [], 0
        # What take_snapshot() wraps: its public accessors build an object per trace (heap.py).
        raw = _tracemalloc._get_traces()
        sites = heap.group_traces(raw, group, _EXCLUDED)
        del raw
        by_key = {s.key: s for s in sites}
        sizes = {s.key: s.size for s in sites}
        peak = self._site_peak[group]
        keys = heap.select(sizes, peak, top)
        self._site_peak[group] = heap.new_peak(sizes, peak)
        return [by_key[k].as_dict() for k in keys], len(sites)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


PROFILER_KEY = web.AppKey("wsops_profiler", Profiler)


def add_profiling_routes(admin: AdminListener, surface: NodeSurface) -> Profiler:
    """Register ``/admin/profile`` (state), ``.../start``, ``.../sample``, ``.../stop``."""
    existing = admin.app.get(PROFILER_KEY)
    if existing is not None:
        return existing
    profiler = Profiler(surface)
    admin.app[PROFILER_KEY] = profiler

    async def state(_: web.Request) -> web.Response:
        return json_response(profiler.state())

    async def start(request: web.Request) -> web.Response:
        data = await read_body(request)
        frames = number_field(data, "frames", 10, 1, MAX_FRAMES)
        lease = number_field(data, "lease_seconds", DEFAULT_LEASE, 1, 86400)
        if frames != int(frames):
            raise web.HTTPBadRequest(text="'frames' must be an integer\n")
        return json_response(profiler.start(int(frames), lease))

    async def sample(request: web.Request) -> web.Response:
        group = request.query.get("group", "lineno")
        if group not in heap.GROUPS:
            raise web.HTTPBadRequest(text=f"'group' must be one of {', '.join(heap.GROUPS)}\n")
        top = int_query(request, "top", 20, 1, heap.MAX_TOP)
        types = int_query(request, "types", 30, 1, MAX_TYPES)
        session = request.query.get("session")
        profiler.renew(session)
        out = await profiler.sample(top, group, types)
        profiler.renew(session)
        return json_response(out)

    async def stop(request: web.Request) -> web.Response:
        data = await read_body(request)
        session = data.get("session")
        if session is not None and not isinstance(session, str):
            raise web.HTTPBadRequest(text="'session' must be a string\n")
        return json_response(profiler.stop(session))

    async def on_cleanup(_: web.Application) -> None:
        profiler.close()

    r = admin.app.router
    r.add_get("/admin/profile", state)
    r.add_post("/admin/profile/start", start)
    r.add_get("/admin/profile/sample", sample)
    r.add_post("/admin/profile/stop", stop)
    admin.app.on_cleanup.append(on_cleanup)
    return profiler
