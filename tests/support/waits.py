"""Waiting on conditions in tests: poll until true, or fail saying what never came.

The one polling loop of the suite: ``until`` in coroutines, ``until_sync`` in plain functions
(process starters that run in a thread). A condition that raises ends the wait at once with its
exception: that is how a wait gives up early (a process that exited, a page that threw).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

What = str | Callable[[], str]


async def until(cond: Callable[[], Any], timeout: float = 5.0, what: What = "",
                step: float = 0.02) -> Any:
    """Poll ``cond`` (a plain or an async callable) until it returns something truthy, and
    return that. Past ``timeout`` seconds the test fails with ``what`` (or where ``cond`` is
    defined) and the last value seen; ``what`` may be a callable, asked only then (for a log or
    a page's console as it is at that moment)."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(_timed_out(cond, timeout, what, value))
        await asyncio.sleep(step)


def until_sync(cond: Callable[[], Any], timeout: float = 5.0, what: What = "",
               step: float = 0.02) -> Any:
    """``until`` for code that cannot await (it blocks the thread between polls)."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(_timed_out(cond, timeout, what, value))
        time.sleep(step)


def _timed_out(cond: Callable[[], Any], timeout: float, what: What, value: Any) -> str:
    described = what() if callable(what) else what
    return (f"timed out after {timeout} s waiting for {described or _where(cond)} "
            f"(last value: {value!r})")


def _where(cond: Callable[[], Any]) -> str:
    code = getattr(cond, "__code__", None)
    if code is None:
        return repr(cond)
    return f"the condition at {code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno}"
