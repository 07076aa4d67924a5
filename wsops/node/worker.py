"""One worker process of ``wsops serve --workers N`` (``python -m wsops.node.worker``).

The supervisor writes one JSON line on the worker's stdin (settings and index: secrets stay out
of argv and the environment) and keeps stdin open. The worker binds the public port with
SO_REUSEPORT next to its siblings, its admin listener on a free loopback port, and answers one
JSON line on stdout (``{"admin_port": P, "pid": PID}``) once it serves. It drains on SIGTERM,
or when stdin reaches EOF: its supervisor is gone. SIGINT is ignored: a Ctrl-C reaches the whole
process group, and the supervisor forwards it as SIGTERM, once per press.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from wsops.config import Settings

log = logging.getLogger("wsops.worker")


def settings_to_json(settings: Settings) -> dict[str, Any]:
    return dataclasses.asdict(settings)


def settings_from_json(data: dict[str, Any]) -> Settings:
    return Settings(**{**data, "allowed_origins": tuple(data.get("allowed_origins") or ())})


@contextlib.asynccontextmanager
async def _running_shared(settings: Settings) -> AsyncIterator[web.Application]:
    """Like ``wsops.server.app.running``, with the listener bound with SO_REUSEPORT."""
    from wsops.server.app import NODE_KEY, create_app, make_runner

    app = create_app(settings)
    runner = make_runner(app, settings)
    app[NODE_KEY].listening = False
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port, reuse_port=True,
                          backlog=settings.backlog).start()
        app[NODE_KEY].listening = True
        yield app
    finally:
        await runner.cleanup()


async def _work(settings: Settings) -> None:
    from wsops.node.lifecycle import drain_on_signal, gc_policy, tune_gc
    from wsops.server.app import NODE_KEY

    tune_gc(settings.gc_threshold)
    async with _running_shared(settings) as app:
        node = app[NODE_KEY]
        port = node.admin.port if node.admin is not None else None
        sys.stdout.write(json.dumps({"admin_port": port, "pid": os.getpid()}) + "\n")
        sys.stdout.flush()
        os.dup2(2, 1)  # nothing else goes to the supervisor's pipe, which nobody reads now
        log.info("serving ws://%s:%d/ws (admin %s, broker %s)", settings.host, settings.port,
                 node.admin.url if node.admin else "off", node.broker.name)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stdin = sys.stdin.fileno()

        def on_stdin() -> None:
            if not os.read(stdin, 4096):
                log.warning("supervisor gone (stdin closed): draining")
                loop.remove_reader(stdin)
                stop.set()

        loop.add_reader(stdin, on_stdin)
        async with gc_policy(node):
            await drain_on_signal(node, (signal.SIGTERM,), stop)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = json.loads(sys.stdin.readline() or "null")
    if not isinstance(spec, dict):
        sys.exit("wsops worker: expected the settings on stdin (started by wsops serve)")
    index = int(spec["index"])
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s worker-{index} %(name)s %(message)s")
    from wsops.node.lifecycle import run_loop

    try:
        run_loop(_work(settings_from_json(spec["settings"])),
                 use_uvloop=bool(spec.get("uvloop", True)))
    except (ValueError, OSError) as exc:
        log.error("worker %d cannot serve: %s", index, exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
