"""``wsops.SyncPublisher``: ``wsops.Publisher`` for code without an event loop (a cron job, a
WSGI view, a Celery task). It runs the Publisher on an event loop in a thread of its own; any
thread may publish through it, each call waiting (bounded) for its answer.

Closing it cancels the publishes still under way (their callers get ``PublishError`` with
``maybe_stored``) before the loop stops, so no caller waits forever. One made before a fork
belongs to the parent: a child gets a clear error and makes its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

from wsops.server.publisher import Publisher, PublishError, Receipt

__all__ = ["SyncPublisher"]


class SyncPublisher:
    """``with SyncPublisher(url) as p: p.publish(room, data)``; the options are
    ``Publisher``'s."""

    def __init__(self, url: str, **options: Any) -> None:
        self._publisher = Publisher(url, **options)
        # an answer within the Publisher's own bounds, with room to spare
        self.wait = 4 * self._publisher.timeout + 5.0
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wsops-publisher",
                                        daemon=True)
        self._thread.start()
        try:
            self._run(self._publisher.start(), 3 * self.wait)  # a cluster's map, every seed
        except BaseException:
            self._closed = True
            self._stop()
            raise

    def _run(self, coro: Coroutine[Any, Any, Any], wait: float) -> Any:
        with self._lock:
            problem = ("SyncPublisher closed" if self._closed else
                       "SyncPublisher made in another process (before a fork): make one per "
                       "process" if os.getpid() != self._pid else None)
            if problem is not None:
                coro.close()
                raise RuntimeError(problem)
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(wait)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise PublishError(f"no answer within {wait:g} s (it may have been stored)",
                               maybe_stored=True) from None
        except concurrent.futures.CancelledError:
            raise PublishError("the SyncPublisher was closed during the call (it may have "
                               "been stored)", maybe_stored=True) from None

    def publish(self, room: str, data: Any, *, traceparent: str | None = None,
                tracestate: str | None = None) -> Receipt:
        """``Publisher.publish``, waited for."""
        receipt: Receipt = self._run(self._publisher.publish(
            room, data, traceparent=traceparent, tracestate=tracestate), self.wait)
        return receipt

    def close(self) -> None:
        """Cancel what is under way, close the Publisher, stop the thread (idempotent)."""
        with self._lock:
            if self._closed or os.getpid() != self._pid:
                return
            self._closed = True
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            future.result(self.wait)
        except concurrent.futures.TimeoutError:
            future.cancel()
        finally:
            self._stop()

    async def _shutdown(self) -> None:
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._publisher.close()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncPublisher:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
