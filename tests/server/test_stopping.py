"""``cancel_all``: tasks that survive a cancellation (as a loop of ``wait_for`` can on
Python 3.11) are cancelled again until they end, within a bound."""

from __future__ import annotations

import asyncio
import contextlib

from wsops.server.stopping import cancel_all


async def test_a_task_that_swallows_one_cancellation_is_still_stopped() -> None:
    swallowed = 0

    async def loop_of_waits() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # what 3.11's wait_for does when the wait completes meanwhile

    task = asyncio.create_task(loop_of_waits())
    await asyncio.sleep(0)
    task.cancel()  # the old way: one cancel, then wait for it...
    done, _ = await asyncio.wait([task], timeout=0.3)
    assert not done and swallowed == 1  # ...would wait forever
    assert await cancel_all([task], timeout=2.0) == []
    assert task.cancelled()


async def test_a_task_that_never_stops_is_reported_not_waited_for() -> None:
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await cancel_all([task], timeout=0.5) == [task]
    assert loop.time() - started < 1.0
    released.set()  # let it end: the test's loop must close
    task.cancel()
    await asyncio.wait([task], timeout=1.0)
    assert task.done()
