"""A connection's work started at once (``wsops.server.eager``): in place when it never waits,
a task for the rest when it does, with what a task would give it (its own context, results and
exceptions of what it awaits, cancellation)."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from typing import Any

import pytest

from tests.support.rawws import UPGRADE, client_frame, read_close_code, read_frame
from tests.support.waits import until
from wsops.config import Settings
from wsops.server.app import NODE_KEY, running
from wsops.server.eager import _Continued, start

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="caller's")

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12),
                                reason="3.12+: eager tasks (asyncio's own)")


async def test_work_that_never_waits_is_done_in_place_without_a_task() -> None:
    done: list[str] = []

    async def work() -> None:
        VAR.set("work's")
        done.append(VAR.get())

    before = asyncio.all_tasks()
    assert start(work(), inline=True) is None
    assert done == ["work's"]  # before start returned
    assert VAR.get() == "caller's"  # in a copy of the context, as a task would be
    assert asyncio.all_tasks() == before


async def test_work_that_waits_goes_on_as_a_task_with_its_context_and_results() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[int] = loop.create_future()
    second: asyncio.Future[int] = loop.create_future()
    seen: list[Any] = []

    async def work() -> None:
        VAR.set("work's")
        seen.append(await first)
        await asyncio.sleep(0)  # a bare yield: the task takes its turn again
        try:
            await second
        except KeyError as exc:
            seen.append(repr(exc))
        seen.append(VAR.get())
        seen.append(asyncio.current_task() is not None)

    task = start(work(), inline=True)
    assert task is not None and not task.done() and seen == []
    first.set_result(41)
    await until(lambda: seen == [41], what="the task resumed with the result")
    second.set_exception(KeyError("k"))
    await task
    assert seen == [41, "KeyError('k')", "work's", True]
    assert VAR.get() == "caller's"


@pytest.mark.parametrize("turns", [0, 1, 3])
async def test_cancelling_the_rest_cancels_the_work_inside_it(turns: int) -> None:
    """Whether the task had taken its first step (turns > 0) or not: the work gets the
    cancellation at its await, and what it waited on is cancelled, as with a task."""
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()
    cleaned: list[str] = []

    async def work() -> None:
        try:
            await never
        except asyncio.CancelledError:
            cleaned.append("cancelled")
            raise
        finally:
            cleaned.append("finally")

    task = start(work(), inline=True)
    assert task is not None and "work" in task.get_name()
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["cancelled", "finally"] and never.cancelled()


async def test_work_cancelled_in_place_ends_quietly_as_a_task_would() -> None:
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()
    gone.cancel()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    try:
        async def work() -> None:
            await gone  # raises at once: no wait

        assert start(work(), inline=True) is None
    finally:
        loop.set_exception_handler(None)
    assert reported == []


async def test_a_failure_in_place_goes_to_the_loops_exception_handler() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    try:
        async def work() -> None:
            raise ValueError("bad")

        assert start(work(), inline=True) is None
    finally:
        loop.set_exception_handler(None)
    assert len(reported) == 1 and isinstance(reported[0]["exception"], ValueError)
    assert "work" in reported[0]["message"]  # which work failed


async def test_work_of_a_broker_that_waits_is_a_task_from_the_start() -> None:
    done: list[bool] = []

    async def work() -> None:
        done.append(asyncio.current_task() is not None)  # redis-py's timeouts ask for it

    task = start(work(), inline=False)
    assert task is not None and done == []
    await task
    assert done == [True]


async def test_the_bundled_server_serves_and_ends_connections_without_tasks() -> None:
    """On the memory broker a publish is answered, and a closed connection leaves its rooms,
    without a task each (a task per publish and per close before: 10,000 closing at once
    were ~80,000 objects for the collector)."""
    settings = Settings(host="127.0.0.1", port=0, admin_port=None, allow_anonymous=True)
    async with running(settings) as (app, _runner, port):
        loop = asyncio.get_running_loop()
        made: list[str] = []
        create_task = loop.create_task

        def counting(coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            made.append(getattr(coro, "__qualname__", repr(coro)))
            return create_task(coro, **kwargs)

        node = app[NODE_KEY]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(UPGRADE.encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        await until(lambda: len(node.hub.conns) == 1, what="the connection registered")
        loop.create_task = counting  # type: ignore[method-assign]
        try:
            writer.write(client_frame(b'{"op":"subscribe","room":"r","id":1}'))
            for i in range(2, 12):
                writer.write(client_frame(b'{"op":"publish","room":"r","id":%d,"data":1}' % i))
            replies = [await read_frame(reader) for _ in range(21)]  # 11 replies, 10 messages
            assert all(op == 0x1 for op, _ in replies)
            assert sum(b'"ok":true' in r for _, r in replies) == 11
            writer.write(client_frame(b"\x03\xe8", 0x8))
            assert await read_close_code(reader) == 1000
            await until(lambda: not node.hub.conns and not node.hub.rooms,
                        what="the connection gone from its room")
        finally:
            loop.create_task = create_task  # type: ignore[method-assign]
            writer.close()
        assert [name for name in made if "WsConn" in name] == []


async def test_work_that_yields_first_and_is_cancelled_at_once_gets_the_cancellation() -> None:
    cleaned: list[str] = []

    async def work() -> None:
        try:
            await asyncio.sleep(0)  # a bare yield (None), then the cancellation
        finally:
            cleaned.append("finally")

    task = start(work(), inline=True)
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]


async def test_work_that_swallows_a_cancellation_goes_on_waiting_for_what_it_awaits_next() -> None:
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()
    then: asyncio.Future[str] = loop.create_future()
    seen: list[str] = []

    async def work() -> None:
        try:
            await never
        except asyncio.CancelledError:
            seen.append(await then)  # its next wait: the task must wait on it, not resume

    task = start(work(), inline=True)
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    await until(lambda: never.cancelled(), what="the first wait cancelled")
    await asyncio.sleep(0)
    assert not task.done() and seen == []
    then.set_result("then")
    await task
    assert seen == ["then"]


async def test_the_rest_forwards_a_full_throw_and_a_close_and_is_not_awaitable() -> None:
    loop = asyncio.get_running_loop()
    events: list[str] = []

    async def work() -> None:
        try:
            await loop.create_future()
        except KeyError as exc:
            events.append(f"thrown {exc.args[0]}")
            await loop.create_future()
        finally:
            events.append("finally")

    coro = work()
    rest = _Continued(coro, coro.send(None))
    assert isinstance(rest.send(None), asyncio.Future)  # the first step: what it waits on
    exc = KeyError("k")
    assert isinstance(rest.throw(KeyError, exc, None), asyncio.Future)  # the 3-argument form
    assert events == ["thrown k"]
    rest.close()
    assert events == ["thrown k", "finally"]
    with pytest.raises(TypeError):
        rest.__await__()
