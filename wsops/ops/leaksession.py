"""A profiling session of ``wsops leaks`` on one node (or worker), over its admin API: start
tracemalloc (if it is off), sample every interval, always end the session (also on Ctrl-C and
errors), and say what the samples can and cannot show (``caveats``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wsops.admin.apiclient import AdminClient, AdminError

SAMPLE_TOP = 100  # sites asked per sample: the biggest and the fastest growing, each
SAMPLE_TYPES = 50


@dataclass
class Collected:
    """What one profiling run got from the node."""

    start: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    stop: dict[str, Any] | None = None
    interrupted: bool = False
    error: AdminError | None = None
    stop_error: AdminError | None = None


async def collect(client: AdminClient, *, duration: float, interval: float, frames: int,
                  group: str, warmup: float,
                  on_sample: Callable[[int, int, dict[str, Any]], None]) -> Collected:
    """Start profiling, sample until ``duration`` is over, always end the session.

    Ctrl-C (a cancel of this task) ends sampling early with what was collected.
    """
    lease = max(60.0, 3 * interval + 30.0) + warmup
    start = await client.profile_start(frames, lease)
    run = Collected(start)
    session = start.get("session")
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(warmup)
        n = int(duration // interval) + 1
        t0 = loop.time()
        for k in range(n):
            await asyncio.sleep(max(0.0, t0 + k * interval - loop.time()))
            sample = await client.profile_sample(top=SAMPLE_TOP, group=group,
                                                 types=SAMPLE_TYPES, session=session)
            if not sample.get("tracing"):
                run.error = AdminError(client.url, "error",
                                       "tracemalloc was stopped on the node during the run")
                break
            run.samples.append(sample)
            on_sample(k + 1, n, sample)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # Ctrl-C: report what we have
        run.interrupted = True
    except AdminError as exc:
        run.error = exc
    finally:
        try:
            run.stop = await client.profile_stop(session)
        except AdminError as exc:
            run.stop_error = exc
    return run


def caveats(run: Collected, warmup: float) -> list[str]:
    out = []
    if run.start.get("started"):
        out.append(
            "tracemalloc was started by this run: memory allocated before it is invisible, so "
            "bounded buffers still being refilled (history rings, caches) show as growth until "
            "they have turned over once" + ("" if warmup else "; confirm with --warmup or a "
                                                               "longer --duration"))
    if run.interrupted:
        out.append("interrupted: the analysis covers the samples taken before Ctrl-C")
    return out


def tracing_note(run: Collected) -> str:
    if not run.start.get("started"):
        return "already on: left on"
    if run.stop is not None and not run.stop.get("tracing"):
        return "started by this run, stopped again"
    if run.stop is not None:
        return "started by this run; another session keeps it on"
    return "started by this run; the node stops it when the lease runs out"


async def collect_all(runs: Any) -> list[Collected]:
    """Run profiling sessions at once; Ctrl-C (a cancel of this task) ends each early, each
    reporting what it collected (``collect``)."""
    tasks = [asyncio.ensure_future(r) for r in runs]
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks)
    return [t.result() for t in tasks]
