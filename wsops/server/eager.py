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
    ``asyncio.timeout`` or ``TaskGroup``, which ask for the current task, as redis-py's client
    does; in place, the current task is None, or aiohttp's handler for bytes that came with
    the upgrade request); else it is a task from the start."""
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):  # pragma: no cover (3.11 here)
        task = asyncio.Task(coro, loop=loop, eager_start=True)
        if task.done():
            if not task.cancelled() and task.exception() is not None:
                report(loop, coro, task.exception())
            return None
        return task
    if not inline:
        return loop.create_task(coro)
    context = contextvars.copy_context()
    try:
        waiting = context.run(coro.send, None)
    except StopIteration:
        return None
    except asyncio.CancelledError:
        return None  # as a task would end: cancelled, nothing to report
    except Exception as exc:
        report(loop, coro, exc)
        return None
    return loop.create_task(_Continued(coro, waiting), name=name(coro), context=context)


def report(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None],
           exc: BaseException | None) -> None:
    loop.call_exception_handler({"message": f"{name(coro)} failed", "exception": exc})


def name(coro: Coroutine[Any, Any, None]) -> str:
    return str(getattr(coro, "__qualname__", type(coro).__name__))


_STEPPED = object()


class _Continued(Coroutine[Any, Any, None]):
    """A coroutine after its first step, for a task to drive: the task's first step gets what
    the work already waits on (the future it yielded, or a throw into the work when the task
    was cancelled before it ran), every later one goes on to the work (``yield from`` without
    its first step, PEP 380)."""

    __slots__ = ("coro", "waiting")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        self.coro, self.waiting = coro, waiting

    def send(self, value: Any) -> Any:
        waiting = self.waiting
        if waiting is not _STEPPED:
            self.waiting = _STEPPED
            return waiting
        return self.coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        waiting, self.waiting = self.waiting, _STEPPED
        if waiting is not _STEPPED and isinstance(waiting, asyncio.Future):
            waiting.cancel()  # cancelled before its first step: what a task cancels
        if val is None and tb is None:
            return self.coro.throw(typ)
        return self.coro.throw(typ, val, tb)

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Generator[Any, None, None]:  # a task's, never awaited
        raise TypeError("the rest of a started coroutine is for a task to drive")
