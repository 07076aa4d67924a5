"""``wsops.Publisher``: publish into a Redis fleet from any process, without a socket (a worker,
a cron job, a backend that has Redis but no route to a node's API), the way Socket.IO's Redis
emitter does.

It stores each message exactly as a node's broker does (``redis_store``: the same script, so
the same offsets, epoch, history and envelope): the fleet's subscribers get it live and can
resume past it. What it needs from the fleet it reads from Redis: the layout's schema version
(it refuses another one, like a node) and the nodes' history length and TTL (their
``--history-size`` and ``--history-ttl``, from the registry), unless given. It keeps Redis'
clock skew measured (a probe every ``heartbeat`` seconds) for the script's deadline, and on a
Redis Cluster it follows the slot map as a node does.

A publish is never retried: ``PublishError`` means it was not stored, except when a replica did
not confirm it in time (``ack="replica"``; ``maybe_stored`` is then True).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from wsops.config import Settings
from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis_cluster import Shards
from wsops.server.broker.redis_fleet import read_registry
from wsops.server.broker.redis_link import Link, Links, Locator, OneLink, measure_clock
from wsops.server.broker.redis_store import RoomLogs, Unreplicated, store
from wsops.server.broker.redis_url import ACKS, parse_broker_url
from wsops.server.core.broker import BrokerUnavailable
from wsops.server.core.protocol import ROOM_RULE, compact_dumps, valid_room
from wsops.server.stopping import cancel_all

__all__ = ["PublishError", "Publisher", "Receipt", "SyncPublisher"]

log = logging.getLogger(__name__)
DEFAULTS = Settings()


class PublishError(Exception):
    """A publish the fleet did not take: not stored (``maybe_stored`` False), or stored but
    not confirmed by a replica in time (True)."""

    def __init__(self, message: str, *, maybe_stored: bool = False) -> None:
        super().__init__(message)
        self.maybe_stored = maybe_stored


@dataclass(frozen=True, slots=True)
class Receipt:
    """Where a published message is: its room, offset and the room's epoch (what a client
    resumes from)."""

    room: str
    offset: int
    epoch: str


def agreed(nodes: list[dict[str, Any]], field: str, kind: type[int] | type[float]
           ) -> int | float | None:
    """The value of ``field`` the fleet's nodes give, the largest when they differ (a node
    upgraded with a longer history); None when no node gives one."""
    values = []
    for node in nodes:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            values.append(kind(node[field]))
    if len(set(values)) > 1:
        log.warning("the fleet's nodes disagree on %s (%s): using %s", field,
                    sorted(set(values)), max(values))
    return max(values) if values else None


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


class Publisher:
    """Publishes into the fleet on ``url`` (the nodes' ``--broker``: ``redis://``,
    ``redis+sentinel://`` or ``redis+cluster://``). Use ``async with Publisher(url) as p:``
    or ``await p.start()`` ... ``await p.close()``.

    ``history_size``, ``history_ttl``: the fleet's (read from its registry) when None, else
    the nodes' defaults. ``max_data``: the largest message (its data as JSON), by default the
    nodes' ``--max-message-size`` default. ``ack="replica"``: a publish returns once a
    replica has it too. ``timeout`` and ``heartbeat`` (how often Redis is probed): the URL's
    ``?timeout=`` and ``?heartbeat=``, as for a node.
    """

    def __init__(self, url: str, *, history_size: int | None = None,
                 history_ttl: float | None = None, timeout: float | None = None,
                 ack: str = "master", max_data: int = DEFAULTS.max_message_size,
                 heartbeat: float | None = None) -> None:
        if ack not in ACKS:
            raise ValueError(f"ack must be one of {', '.join(ACKS)}, not {ack!r}")
        self.target, opts = parse_broker_url(url)  # ValueError naming what is wrong
        self.shown = self.target.shown
        self.keys = lua.Keys(opts.prefix, cluster=self.target.cluster is not None)
        self.timeout = timeout if timeout is not None else opts.timeout
        self.ack, self.max_data = ack, max_data
        self.heartbeat = heartbeat if heartbeat is not None else opts.heartbeat
        self._history = (history_size, history_ttl)
        self.logs: RoomLogs | None = None
        self.links: Links | None = None
        self._locator: Locator | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        """Reach Redis (every master of a cluster), check the layout's schema and read the
        fleet's history settings; PublishError when Redis does not answer or holds another
        layout."""
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        if self.target.cluster is not None:
            shards = Shards(self.target, self.timeout, self.keys)
            self.links = shards
            if not await shards.refresh():
                raise PublishError(f"no node of {self.shown} answered with its slot map")
        else:
            self._locator = Locator(self.target, self.timeout)
            self.links = OneLink(Link(self.target, self.timeout, self._locator))
        await self._probe()
        down = [link.shown for link in self.links.all() if not link.up]
        if down:
            raise PublishError(f"Redis at {', '.join(down)} did not answer within "
                               f"{self.timeout:g} s")
        registry = self.links.registry()
        try:
            # the layout's version: ours when nothing is there yet (as a node's first beat)
            await registry.call("SET", self.keys.schema, lua.SCHEMA, "NX")
            schema = await registry.call("GET", self.keys.schema)
            nodes = await read_registry(registry.redis, self.keys)
        except BrokerUnavailable as exc:
            raise PublishError(str(exc)) from exc
        if schema is not None and schema.decode(errors="replace") != lua.SCHEMA:
            raise PublishError(
                f"Redis holds wsops data of schema {schema[:16].decode(errors='replace')!r} "
                f"under prefix {self.keys.prefix!r}; this publisher writes schema "
                f"{lua.SCHEMA!r}: use the wsops version of the fleet, or another ?prefix=")
        size, ttl = self._history
        size = int(_first(size, agreed(nodes, "history_size", int), DEFAULTS.history_size))
        ttl = float(_first(ttl, agreed(nodes, "history_ttl", float), DEFAULTS.history_ttl))
        self.logs = RoomLogs(self.keys, size, max(1, int(ttl * 1000)), self.timeout, self.ack)
        self._tasks.append(asyncio.create_task(self._follow()))

    async def _probe(self) -> None:
        """Mark each master up or down, and measure its clock (the script's deadline)."""
        assert self.links is not None
        await asyncio.gather(*(measure_clock(link) for link in self.links.all()))

    async def _follow(self) -> None:
        """Keep the links' health and clocks (and a cluster's slot map) current."""
        if isinstance(self.links, Shards):
            await self.links.run()  # it probes every master each half timeout
            return
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._probe()
            except Exception:  # a bug must not stop the probes: the link would stay down
                log.exception("probing redis %s failed", self.shown)

    async def publish(self, room: str, data: Any, *, traceparent: str | None = None
                      ) -> Receipt:
        """Store ``data`` (any JSON value) as ``room``'s next message, delivered to the fleet's
        subscribers; its Receipt once Redis has it. ValueError for a bad room or data,
        PublishError when the fleet did not take it."""
        if not valid_room(room):
            raise ValueError(f"room {str(room)[:140]!r}: a room name is {ROOM_RULE}")
        try:
            encoded = compact_dumps(data).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"data is not a JSON value: {exc}") from None
        if len(encoded) > self.max_data:
            raise ValueError(f"data is {len(encoded)} bytes as JSON; at most {self.max_data}")
        if traceparent is not None and not 0 < len(traceparent) <= 128:
            raise ValueError("traceparent must be a string of 1-128 characters")
        if self.logs is None or self.links is None:
            raise RuntimeError("Publisher not started: use 'async with Publisher(url)' or "
                               "await start()")
        accepted_at = time.time()
        try:
            msg = await store(self.logs, self.links.room(room), room, encoded,
                              int(accepted_at * 1000), accepted_at, traceparent)
        except Unreplicated as exc:
            raise PublishError(str(exc), maybe_stored=True) from exc
        except BrokerUnavailable as exc:
            raise PublishError(str(exc)) from exc
        self.published += 1
        return Receipt(room, msg.offset, msg.epoch)

    async def close(self) -> None:
        await cancel_all(self._tasks, 5.0, "publisher task")
        self._tasks.clear()
        if self.links is not None:
            with contextlib.suppress(Exception):
                await self.links.close()
        if self._locator is not None:
            with contextlib.suppress(Exception):
                await self._locator.close()



class SyncPublisher:
    """``Publisher`` for code without an event loop (a cron job, a WSGI view): it runs one in
    a thread of its own, and may be shared by threads. ``with SyncPublisher(url) as p:
    p.publish(room, data)``; the options are ``Publisher``'s."""

    def __init__(self, url: str, **options: Any) -> None:
        self._publisher = Publisher(url, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wsops-publisher",
                                        daemon=True)
        self._thread.start()
        try:
            self._run(self._publisher.start())
        except BaseException:
            self._stop()
            raise

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("SyncPublisher closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def publish(self, room: str, data: Any, *, traceparent: str | None = None) -> Receipt:
        """``Publisher.publish``, waited for."""
        receipt: Receipt = self._run(self._publisher.publish(room, data,
                                                             traceparent=traceparent))
        return receipt

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self._publisher.close())
        finally:
            self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncPublisher:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
