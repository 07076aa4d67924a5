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

A publish is never retried: ``PublishError`` says whether it may have been stored
(``maybe_stored``): False when it was refused before reaching Redis (Redis known to be down,
no master for the room's slot, the script's deadline passed), True when the call went out and
no answer came (a timeout, a lost connection, an error from Redis) or a replica did not
confirm it in time (``ack="replica"``): then it may be delivered, and a retry may store it
twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from redis import exceptions as rexc

from wsops.config import Settings
from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis_cluster import Shards
from wsops.server.broker.redis_fleet import read_registry
from wsops.server.broker.redis_link import (
    REDIRECTS,
    Link,
    Links,
    Locator,
    OneLink,
    measure_clock,
)
from wsops.server.broker.redis_store import NotStored, RoomLogs, Unreplicated, store
from wsops.server.broker.redis_url import ACKS, parse_broker_url
from wsops.server.core.broker import BrokerUnavailable
from wsops.server.core.protocol import ROOM_RULE, compact_dumps, valid_room
from wsops.server.stopping import cancel_all
from wsops.tracecontext import TRACESTATE_RULE, valid_tracestate

__all__ = ["PublishError", "Publisher", "Receipt"]

log = logging.getLogger(__name__)
DEFAULTS = Settings()
REREAD = 30.0  # seconds between reads of the fleet's history settings from its registry
FAILED = (rexc.RedisError, OSError, TimeoutError)  # what a raw redis-py call may raise


class PublishError(Exception):
    """A publish not confirmed: refused before it reached Redis (``maybe_stored`` False), or
    sent without an answer, or not confirmed by a replica in time (True: it may be
    delivered)."""

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
        self._closed = False
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
        if self.links is not None or self._closed:
            raise RuntimeError("a Publisher starts once")
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
        await self._read_fleet(first=True)
        self._tasks.append(asyncio.create_task(self._follow()))
        self._tasks.append(asyncio.create_task(self._reread()))

    async def _read_fleet(self, first: bool = False) -> None:
        """The layout's schema (ours when nothing is there yet, as a node's first beat
        writes it; another one refused) and the nodes' history settings."""
        assert self.links is not None
        registry = self.links.registry()
        try:
            await registry.call("SET", self.keys.schema, lua.SCHEMA, "NX")
            schema = await registry.call("GET", self.keys.schema)
            nodes = await read_registry(registry.redis, self.keys)
        except (BrokerUnavailable, *FAILED) as exc:
            raise PublishError(f"reading the fleet's registry failed: {exc}") from exc
        if schema is not None and schema.decode(errors="replace") != lua.SCHEMA:
            raise PublishError(
                f"Redis holds wsops data of schema {schema[:16].decode(errors='replace')!r} "
                f"under prefix {self.keys.prefix!r}; this publisher writes schema "
                f"{lua.SCHEMA!r}: use the wsops version of the fleet, or another ?prefix=")
        given_size, given_ttl = self._history
        found_size = agreed(nodes, "history_size", int)
        found_ttl = agreed(nodes, "history_ttl", float)
        if first and ((given_size is None and found_size is None)
                      or (given_ttl is None and found_ttl is None)):
            log.warning("no node of the fleet under prefix %r says its history settings "
                        "(none running, or older than this version): using the defaults, "
                        "%d messages for %g s, until one does; give history_size and "
                        "history_ttl if the nodes run others", self.keys.prefix,
                        DEFAULTS.history_size, DEFAULTS.history_ttl)
        size = int(_first(given_size, found_size, self.logs.history_size if self.logs
                          else DEFAULTS.history_size))
        ttl_ms = max(1, int(1000 * _first(given_ttl, found_ttl, self.logs.ttl_ms / 1000
                                          if self.logs else DEFAULTS.history_ttl)))
        self.logs = RoomLogs(self.keys, size, ttl_ms, self.timeout, self.ack)

    async def _reread(self) -> None:
        """The fleet's history settings again every REREAD seconds (nodes restarted with
        others); a failed read keeps the last ones."""
        while True:
            await asyncio.sleep(REREAD)
            try:
                await self._read_fleet()
            except PublishError as exc:
                log.warning("%s", exc)

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

    async def publish(self, room: str, data: Any, *, traceparent: str | None = None,
                      tracestate: str | None = None) -> Receipt:
        """Store ``data`` (any JSON value) as ``room``'s next message, delivered to the fleet's
        subscribers; its Receipt once Redis has it. ``traceparent`` and ``tracestate`` (W3C
        trace context of the caller's span) go in its envelope. ValueError for a bad room,
        data or trace context, PublishError when the fleet did not take it."""
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
        if tracestate is not None:
            if not valid_tracestate(tracestate):
                raise ValueError(f"tracestate must be {TRACESTATE_RULE}")
            if traceparent is None:
                raise ValueError("tracestate needs a traceparent")
        if self.logs is None or self.links is None:
            raise RuntimeError("Publisher closed" if self._closed else "Publisher not started: "
                               "use 'async with Publisher(url)' or await start()")
        try:
            link = self.links.room(room)
        except BrokerUnavailable as exc:  # no master known for the room's slot
            raise PublishError(f"{exc}: not stored") from exc
        if not link.up:
            raise PublishError(f"Redis at {link.shown} is down (probed every "
                               f"{self.heartbeat:g} s): not stored")
        accepted_at = time.time()
        try:
            msg = await store(self.logs, link, room, encoded, int(accepted_at * 1000),
                              accepted_at, traceparent, None, tracestate)
        except NotStored as exc:
            raise PublishError(f"{exc} (its deadline passed): not stored") from exc
        except Unreplicated as exc:
            raise PublishError(str(exc), maybe_stored=True) from exc
        except BrokerUnavailable as exc:
            moved = isinstance(exc.__cause__, REDIRECTS)  # the slot moved: the script did not run
            raise PublishError(f"{exc}: {'not stored' if moved else 'it may have been stored'}",
                               maybe_stored=not moved) from exc
        except FAILED as exc:  # an error from Redis (OOM, NOPERM, BUSY, ...)
            raise PublishError(f"Redis failed the publish: {exc} (it may have been stored)",
                               maybe_stored=True) from exc
        self.published += 1
        return Receipt(room, msg.offset, msg.epoch)

    async def close(self) -> None:
        """Stop probing and close every connection; publishing afterwards is refused."""
        self._closed = True
        await cancel_all(self._tasks, 5.0, "publisher task")
        self._tasks.clear()
        links, self.links, self.logs = self.links, None, None
        if links is not None:
            with contextlib.suppress(Exception):
                await links.close()
        if self._locator is not None:
            with contextlib.suppress(Exception):
                await self._locator.close()
