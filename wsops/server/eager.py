"""Start a connection's work at once, as far as it goes without waiting (Python 3.12's eager
tasks, on 3.11 too).

Each text frame the bundled server reads starts its serving (``WsConn._serve``), and each
connection that ends starts its finishing. With ``loop.create_task`` on 3.11 that is a task,
a handle, a context and a loop turn per publish, and when 10,000 connections close at once,
10,000 tasks (~80,000 objects for the next collection to walk: a 6-25 ms pause measured).
On an in-process broker most of that work never waits: ``start`` runs the coroutine's first
step in place, in a copy of the context as a task would, and makes a task only for the rest
when it does wait.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine, Generator
from typing import Any


def start(coro: Coroutine[Any, Any, None], *, inline: bool) -> asyncio.Task[None] | None:
    """Run ``coro`` at once; None when it finished there (an exception it raised goes to the
    loop's exception handler, as a task's unretrieved one would), else the task running the
    rest of it. On 3.11 only when ``inline``: the work never needs to be in a task (no
    ``asyncio.timeout``, which asks for the current task, as redis-py's client does); else it
    is a task from the start."""
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):  # pragma: no cover (3.11 here)
        task = asyncio.Task(coro, loop=loop, eager_start=True)
        if task.done():
            if not task.cancelled() and task.exception() is not None:
                report(loop, task.exception())
            return None
        return task
    if not inline:
        return loop.create_task(coro)
    context = contextvars.copy_context()
    try:
        waiting = context.run(coro.send, None)
    except StopIteration:
        return None
    except Exception as exc:
        report(loop, exc)
        return None
    return loop.create_task(_rest(coro, waiting), context=context)


def report(loop: asyncio.AbstractEventLoop, exc: BaseException | None) -> None:
    loop.call_exception_handler({"message": "a connection's work failed", "exception": exc})


async def _rest(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    await _Continued(coro, waiting)


class _Continued:
    """A coroutine after its first step, for a task to drive: what it waits on (the future
    it yielded) goes to the task as it was, and what the task then sends or throws goes on to
    the coroutine (``yield from`` without its first step, PEP 380)."""

    __slots__ = ("coro", "waiting")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        self.coro, self.waiting = coro, waiting

    def __await__(self) -> Generator[Any, Any, None]:
        coro, waiting = self.coro, self.waiting
        while True:
            try:
                sent = yield waiting
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation, thrown in by the task
                try:
                    waiting = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting = coro.send(sent)
                except StopIteration:
                    return
