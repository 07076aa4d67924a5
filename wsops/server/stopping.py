"""Stopping background tasks for sure.

On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives as the awaited
operation completes (it returns the result instead; fixed in 3.12), so a loop of
``wait_for`` calls can survive one ``cancel()`` and run on; awaiting it after a single cancel
then hangs (a node's stop did, once in CI, with Redis already gone). ``cancel_all`` cancels
again until each task has ended, within a bound, and says which did not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_all(tasks: Iterable[asyncio.Future[Any]], timeout: float = 5.0,  # noqa: ASYNC109
                     what: str = "task") -> list[asyncio.Future[Any]]:
    """Cancel ``tasks`` and wait until they end, cancelling again every 0.1 s, for at most
    ``timeout`` seconds; returns those still running (logged)."""
    pending = [t for t in tasks if not t.done()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            log.warning("%d %s(s) still running %.1f s after being cancelled: %r",
                        len(pending), what, timeout, pending[:3])
            break
        for task in pending:
            task.cancel()
        _, still = await asyncio.wait(pending, timeout=min(0.1, left))
        pending = list(still)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit
    return pending
