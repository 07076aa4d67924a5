"""Waiting on conditions in tests: poll until true, or fail saying what never came."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def until(cond: Callable[[], Any], timeout: float = 5.0, what: str = "",
                step: float = 0.02) -> Any:
    """Poll ``cond`` (a plain or an async callable) until it returns something truthy, and
    return that. Past ``timeout`` seconds the test fails with ``what`` (or where ``cond`` is
    defined) and the last value seen."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for "
                                 f"{what or _where(cond)} (last value: {value!r})")
        await asyncio.sleep(step)


def _where(cond: Callable[[], Any]) -> str:
    code = getattr(cond, "__code__", None)
    if code is None:
        return repr(cond)
    return f"the condition at {code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno}"
