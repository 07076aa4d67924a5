"""The admin listener of ``wsops serve --workers N``: one node made of N worker processes.

Each worker keeps its own admin listener on a private loopback port; this one, on the public
admin port, answers for the node by asking them all in parallel:

- ``/metrics``: every worker's series with a ``worker="i"`` label added (one HELP/TYPE per
  family), plus ``wsops_worker_up`` and ``wsops_worker_restarts_total``. Per-worker series rather
  than prometheus-client's multiprocess mode: the wsops collectors compute gauges from live
  sets at scrape time, which multiprocess mode cannot share, and a restarted worker's counters
  then reset under their own label, which ``rate()`` handles.
- ``/readyz``: 200 only when the supervisor and every worker are ready; ``/healthz``: 200 while
  the supervisor runs.
- ``/admin/stats``, ``/admin/drain``, ``/admin/connections``: sums, with a ``workers`` list;
  drain start and cancel go to every worker. The same token rules (``admin_auth``) apply.
- ``/`` and ``/admin/fleet``: the fleet page, showing the node (its workers summed) as one row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, exposition, parser
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics import parser as om_parser
from prometheus_client.registry import Collector

from wsops.admin.apiclient import DOWN, AdminClient, AdminError
from wsops.admin.contract import MAX_TOP_ROOMS, merge_closes
from wsops.admin.debugapi import target_id
from wsops.admin.fleetpage import add_fleet_page
from wsops.admin.http import int_query, json_response, read_body
from wsops.admin.listener import AdminListener
from wsops.version import __version__

TIMEOUT = 2.0
T = TypeVar("T")
SUMMED = ("connections", "messages_in_per_second", "messages_out_per_second", "rss_bytes",
          "cpu_seconds", "open_fds", "gc_collections", "gc_pause_seconds", "messages_in_total",
          "messages_out_total")
WORST = ("delivery_p99_seconds", "loop_lag_p99_seconds")  # no exact node quantile: the worst
DRAIN_COUNTS = ("total", "closed", "forced", "batches", "remaining")


@dataclass(frozen=True)
class WorkerRef:
    """What the supervisor knows of one worker: its admin URL (None while it is down)."""

    index: int
    admin_url: str | None
    pid: int | None
    restarts: int


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def merge_expositions(
    texts: Sequence[tuple[str, str]], extra: Iterable[Metric] = (), openmetrics: bool = False,
    names: Sequence[str] = (),
) -> bytes:
    """Workers' expositions ``(worker, text)`` as one, each sample labelled ``worker``; only the
    series ``names`` (``name[]=`` of the scrape) when given."""
    parse = om_parser.text_string_to_metric_families if openmetrics else (
        parser.text_string_to_metric_families)
    families: dict[str, Metric] = {}
    for worker, text in texts:
        for fam in parse(text):
            merged = families.get(fam.name)
            if merged is None:
                merged = families[fam.name] = Metric(fam.name, fam.documentation, fam.type,
                                                     fam.unit)
            merged.samples.extend(
                s._replace(labels={**s.labels, "worker": worker}) for s in fam.samples)
    registry = CollectorRegistry(support_collectors_without_names=True)
    registry.register(_Families([*families.values(), *extra]))
    if names:
        registry = registry.restricted_registry(names)  # type: ignore[assignment]
    if openmetrics:
        return om_exposition.generate_latest(registry)  # type: ignore[no-untyped-call,no-any-return]
    return exposition.generate_latest(registry)


def merge_flow(snapshots: Sequence[Mapping[str, Any]], top: int) -> dict[str, Any]:
    """The node's busiest rooms from its workers' (``GET /admin/flow`` shape): a room spanning
    workers is summed (its publishers too: a user publishing through two workers counts twice)."""
    rooms: dict[str, dict[str, Any]] = {}
    for snap in snapshots:
        for r in snap.get("rooms", ()):
            have = rooms.get(r["room"])
            if have is None:
                rooms[r["room"]] = dict(r)
                continue
            for key in ("msgs_in", "bytes_in", "msgs_out", "bytes_out", "publishers",
                        "subscribers"):
                have[key] += r[key]
            have["since"] = min(have["since"], r["since"])
            have["publishers_capped"] = have["publishers_capped"] or r["publishers_capped"]
    busiest = sorted(rooms.values(), key=lambda r: -(r["msgs_in"] + r["msgs_out"]))[:top]
    return {"generated_at": max((s.get("generated_at", 0.0) for s in snapshots), default=0.0),
            "tracked": sum(int(s.get("tracked", 0)) for s in snapshots),
            "forgotten": sum(int(s.get("forgotten", 0)) for s in snapshots),
            "rooms": busiest}


def merge_debug(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The node's debug switch from its workers' (``GET /admin/debug`` shape): a target on
    any worker, with the most time left on any."""
    targets: dict[str, dict[str, Any]] = {}
    for state in states:
        for t in state.get("targets", ()):
            have = targets.get(t["id"])
            if have is None or t["seconds_left"] > have["seconds_left"]:
                targets[t["id"]] = dict(t)
    return {"traced": bool(states) and all(s.get("traced") for s in states),
            "logger": "wsops.debug", "targets": [targets[k] for k in sorted(targets)]}


def merge_drain(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The node's drain status from its workers' (``GET /admin/drain`` shape)."""
    names = {s.get("state", "idle") for s in states}
    if len(names) == 1:
        state = names.pop()
    elif names & {"draining", "drained"}:
        state = "draining"  # some done, some not (or restarted meanwhile)
    else:
        state = "cancelled" if "cancelled" in names else "idle"
    out: dict[str, Any] = {"state": state}
    for key in DRAIN_COUNTS:
        out[key] = sum(int(s.get(key) or 0) for s in states)
    started = [s["started_at"] for s in states if s.get("started_at") is not None]
    finished = [s["finished_at"] for s in states if s.get("finished_at") is not None]
    out["started_at"] = min(started) if started else None
    out["finished_at"] = max(finished) if state == "drained" and finished else None
    if any("closes" in s for s in states):  # GET /admin/drain: the workers' logs as one
        out["closes"] = merge_closes([(s["started_at"], s.get("closes") or ())
                                      for s in states if s.get("started_at") is not None])
        out["now"] = time.time()
    return out


def _add_counts(into: dict[str, int], counts: Any) -> None:
    for key, n in (counts or {}).items():
        into[key] = into.get(key, 0) + int(n)


def merge_stats(stats: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sums (connections, rates, RSS, CPU), the worst quantiles, the weighted memory per
    connection; ``draining`` when any worker drains."""
    out: dict[str, Any] = {k: sum(float(s.get(k) or 0) for s in stats) for k in SUMMED}
    for key in ("connections", "messages_in_total", "messages_out_total"):
        out[key] = int(out[key])
    for key in WORST:
        values = [float(s[key]) for s in stats if s.get(key) is not None]
        out[key] = max(values) if values else None
    conns = out["connections"]
    out["memory_per_connection_bytes"] = sum(
        float(s.get("memory_per_connection_bytes") or 0) * int(s.get("connections") or 0)
        for s in stats) / conns if conns else 0.0
    by_route: dict[str, int] = {}
    for s in stats:
        _add_counts(by_route, s.get("connections_by_route"))
    out["connections_by_route"] = by_route
    out["draining"] = any(s.get("draining") for s in stats)
    out["drain"] = merge_drain([s.get("drain") or {} for s in stats])
    for key in ("operations", "hub"):  # counters of the bundled server's workers
        if any(key in s for s in stats):
            counts: dict[str, int] = {}
            for s in stats:
                _add_counts(counts, {k: v for k, v in (s.get(key) or {}).items()
                                     if isinstance(v, (int, float))})
            out[key] = counts
    return out


class WorkersAdmin(AdminListener):
    """The public admin listener of a supervisor; ``workers()`` says where the workers are and
    ``own_reasons()`` why the supervisor itself is not ready (starting, stopping)."""

    def __init__(self, host: str, port: int, token: str | None,
                 workers: Callable[[], Sequence[WorkerRef]],
                 own_reasons: Callable[[], list[str]], **listener: Any) -> None:
        """``listener``: the AdminListener's bounds (``handshake_timeout``, ...)."""
        super().__init__(host, port, token, **listener)
        self.workers = workers
        self.add_readiness_check(lambda: "; ".join(own_reasons()) or None)
        self._session: aiohttp.ClientSession | None = None
        r = self.app.router
        r.add_get("/metrics", self._metrics)
        r.add_get("/admin/stats", self._stats)
        r.add_get("/admin/drain", self._drain_status)
        r.add_post("/admin/drain", self._drain_start)
        r.add_post("/admin/drain/cancel", self._drain_cancel)
        r.add_get("/admin/connections", self._connections)
        r.add_get("/admin/flow", self._flow)
        r.add_get("/admin/tap", self._tap)
        r.add_get("/admin/debug", self._debug_state)
        r.add_post("/admin/debug", self._debug_start)
        r.add_post("/admin/debug/stop", self._debug_stop)
        add_fleet_page(self, self.node_stats)  # the node itself: one row, its workers summed

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._session is not None:
            await self._session.close()

    async def _each(self, call: Callable[[AdminClient], Awaitable[T]]
                    ) -> list[tuple[WorkerRef, T | AdminError]]:
        """``call`` on every worker's admin API in parallel: its answer or why there is none."""
        refs = list(self.workers())

        async def one(ref: WorkerRef) -> T | AdminError:
            if ref.admin_url is None or self._session is None:
                return AdminError(f"worker {ref.index}", DOWN, "down")
            try:
                return await call(AdminClient(self._session, ref.admin_url, self.token, TIMEOUT))
            except AdminError as exc:
                return exc

        return list(zip(refs, await asyncio.gather(*(one(r) for r in refs)), strict=True))

    @staticmethod
    def _ok(answers: Sequence[tuple[WorkerRef, T | AdminError]]) -> list[T]:
        return [a for _, a in answers if not isinstance(a, AdminError)]

    async def _readyz(self, request: web.Request) -> web.Response:
        reasons = self.not_ready_reasons()
        for ref, answer in await self._each(lambda c: c.readiness()):
            if isinstance(answer, AdminError):
                reasons.append(f"worker {ref.index} {answer.message}")
            elif not answer[0]:
                reasons.extend(f"worker {ref.index}: {r}" for r in answer[1] or ["not ready"])
        if reasons:
            return web.json_response({"ready": False, "reasons": reasons}, status=503)
        return web.json_response({"ready": True})

    async def _metrics(self, request: web.Request) -> web.Response:
        om = "application/openmetrics-text" in request.headers.get("Accept", "")
        names = request.query.getall("name[]", [])
        answers = await self._each(lambda c: c.metrics(openmetrics=om, names=names))
        up = GaugeMetricFamily("wsops_worker_up",
                               "1 when the worker answered this scrape.", labels=["worker"])
        restarts = CounterMetricFamily("wsops_worker_restarts",
                                       "Times the supervisor restarted the worker.",
                                       labels=["worker"])
        texts = []
        for ref, answer in answers:
            ok = not isinstance(answer, AdminError)
            if not isinstance(answer, AdminError):
                texts.append((str(ref.index), answer))
            up.add_metric([str(ref.index)], 1.0 if ok else 0.0)
            restarts.add_metric([str(ref.index)], ref.restarts)
        body = merge_expositions(texts, [up, restarts], openmetrics=om, names=names)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = (om_exposition.CONTENT_TYPE_LATEST if om
                                        else exposition.CONTENT_TYPE_LATEST)
        resp.enable_compression()  # gzip when the scraper accepts it, as a worker's own /metrics
        return resp

    async def _stats(self, request: web.Request) -> web.Response:
        return json_response(await self.node_stats())

    async def node_stats(self) -> dict[str, Any]:
        """The node's ``/admin/stats``: the workers' merged, with a ``workers`` list."""
        workers = []
        for ref, answer in await self._each(lambda c: c.stats()):
            row: dict[str, Any] = {"worker": ref.index, "pid": ref.pid,
                                   "admin_url": ref.admin_url, "restarts": ref.restarts}
            if isinstance(answer, AdminError):
                row.update(up=False, error=answer.message)
            else:
                row.update(answer, up=True)
            workers.append(row)
        reasons = self.not_ready_reasons()
        for row in workers:
            if not row["up"]:
                reasons.append(f"worker {row['worker']} {row['error']}")
            reasons.extend(f"worker {row['worker']}: {r}" for r in
                           row.get("not_ready_reasons") or ())
        return {"version": __version__, "started_at": self.started_at,
                "uptime_seconds": time.time() - self.started_at, "ready": not reasons,
                "not_ready_reasons": reasons,
                **merge_stats([w for w in workers if w["up"]]), "workers": workers}

    async def _drain_status(self, request: web.Request) -> web.Response:
        answers = await self._each(lambda c: c.drain_status())
        return json_response(merge_drain([dict(a) for a in self._ok(answers)]))

    async def _drain_start(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        answers = await self._each(lambda c: c.start_drain(body))
        for _, answer in answers:
            if isinstance(answer, AdminError) and answer.status == 400:  # same body: same refusal
                raise web.HTTPBadRequest(text=answer.body)
        ok = self._ok(answers)
        options = next((a["options"] for a in ok if a.get("options")), None)
        return json_response({**merge_drain([dict(a) for a in ok]),
                              "started": any(a.get("started") for a in ok),
                              "options": options, "workers_reached": len(ok)}, status=202)

    async def _drain_cancel(self, request: web.Request) -> web.Response:
        ok = self._ok(await self._each(lambda c: c.cancel_drain()))
        return json_response({**merge_drain([dict(a) for a in ok]),
                              "cancelled": any(a.get("cancelled") for a in ok)})

    async def _flow(self, request: web.Request) -> web.Response:
        top = int_query(request, "top", 20, 1, MAX_TOP_ROOMS)
        ok = self._ok(await self._each(lambda c: c.flow(top)))
        return json_response(merge_flow([dict(a) for a in ok], top))

    async def _tap(self, request: web.Request) -> web.Response:
        """A tap streams one process's events: name the worker's own admin listener."""
        urls = ", ".join(f"worker {r.index}: {r.admin_url}" for r in self.workers()
                         if r.admin_url)
        raise web.HTTPNotImplemented(text=(
            "a --workers node is several processes: tap each worker's own admin listener "
            f"(loopback, on the node's host): {urls or 'no worker is up'}\n"))

    # -- the debug switch: every worker gets the same target (named by what it watches) ------

    async def _debug_state(self, request: web.Request) -> web.Response:
        return json_response(merge_debug(self._ok(await self._each(lambda c: c.debug_state()))))

    async def _debug_start(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        answers = await self._each(lambda c: c.debug_start(body))
        for _, answer in answers:  # same body: same refusal from every worker
            if isinstance(answer, AdminError) and answer.status in (400, 404, 409):
                raise {400: web.HTTPBadRequest, 404: web.HTTPNotFound,
                       409: web.HTTPConflict}[answer.status](text=answer.body + "\n")
        ok = self._ok(answers)
        if not ok:
            raise web.HTTPServiceUnavailable(text="no worker answered\n")
        return json_response({**merge_debug(ok), "target": ok[0]["target"],
                              "workers_reached": len(ok)})

    async def _debug_stop(self, request: web.Request) -> web.Response:
        which = target_id(await read_body(request))
        ok = self._ok(await self._each(lambda c: c.debug_stop(which)))
        stopped = sorted({i for a in ok for i in a["stopped"]})
        return json_response({**merge_debug(ok), "stopped": stopped})

    async def _connections(self, request: web.Request) -> web.Response:
        top = int_query(request, "top", 20, 1, MAX_TOP_ROOMS)
        ok = self._ok(await self._each(lambda c: c.connections(top)))
        by_route: dict[str, int] = {}
        rooms: dict[str, int] = {}  # a room spanning workers: its connections on each, summed
        for a in ok:
            _add_counts(by_route, a.get("by_route"))
            _add_counts(rooms, {r["room"]: r["connections"] for r in a.get("top_rooms") or ()})
        busiest = sorted(rooms.items(), key=lambda kv: -kv[1])[:top]
        return json_response({
            "total": sum(int(a.get("total") or 0) for a in ok), "by_route": by_route,
            "top_rooms": [{"room": r, "connections": n} for r, n in busiest]})
