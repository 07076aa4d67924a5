"""Running a node process: the event loop, the GC policy, serving until a signal, then draining.

``wsops serve`` (``wsops.ops.serve``) and each worker of ``--workers N`` (``wsops.node.worker``)
run a node through these functions. May import the server and the config, never the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any

from wsops.config import Settings
from wsops.node.gcpolicy import GcFreezer

if TYPE_CHECKING:
    from wsops.server.app import Node

log = logging.getLogger("wsops.serve")


def run(settings: Settings, *, use_uvloop: bool = True) -> int:
    """Serve one node process until SIGTERM/SIGINT, then drain and exit; returns the exit code.
    (``--workers N`` above 1 is ``wsops.node.supervisor.supervise``.)"""
    run_loop(serve_node(settings), use_uvloop=use_uvloop)
    return 0


def run_loop(main: Coroutine[Any, Any, None], *, use_uvloop: bool) -> None:
    """Run ``main`` on uvloop when asked for and installed, else on asyncio's loop."""
    if use_uvloop:
        try:
            import uvloop

            uvloop.run(main)
            return
        except ImportError:
            pass
    asyncio.run(main)


def tune_gc(threshold: int) -> None:
    """Fewer, not longer, garbage collections for a server holding many connections: a full
    collection walks every tracked object (~300 ms at 10K connections here), and Python's
    default young threshold (700) runs one every few seconds under traffic. What is loaded at
    startup is frozen out of all collections (it lives as long as the process), after one
    collection: garbage frozen in a reference cycle would never be freed."""
    if threshold:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])
    gc.collect()
    gc.freeze()


async def serve_node(settings: Settings) -> None:
    from wsops.server.app import NODE_KEY, running

    tune_gc(settings.gc_threshold)

    async with running(settings) as (app, _runner, port):
        node = app[NODE_KEY]
        admin = f" admin {node.admin.url}" if node.admin else ""
        log.info("wsops serving ws://%s:%d/ws%s (broker %s)", settings.host, port, admin,
                 node.broker.name)
        async with gc_policy(node):
            await drain_on_signal(node)


@contextlib.asynccontextmanager
async def gc_policy(node: Node) -> AsyncIterator[GcFreezer | None]:
    """Freeze the node's long-lived state out of collections (``wsops.node.gcpolicy``) while
    the block runs; nothing when ``--gc-freeze-interval`` is 0."""
    interval = node.settings.gc_freeze_interval
    if not interval:
        yield None
        return
    freezer = GcFreezer(interval, paused=lambda: node.drainer.draining)
    task = asyncio.create_task(freezer.run(), name="wsops-gc-freeze")
    try:
        yield freezer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def drain_on_signal(
    node: Node, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
    stop: asyncio.Event | None = None,
) -> None:
    """Wait for one of ``signals`` (or ``stop``), then drain ``node``; a second signal during
    the drain ends it at once."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stop signal: draining (a second one ends the drain at once)")
    task = node.drain()
    for sig in signals:
        loop.add_signal_handler(sig, task.cancel)
    status = await node.drainer.wait()
    if task.cancelled():
        log.warning("drain ended at once by a second signal (%d of %d closed); exiting",
                    status.closed, status.total)
    else:
        log.info("drained; exiting")
