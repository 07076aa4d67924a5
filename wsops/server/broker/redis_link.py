"""The Redis broker's command side: one redis-py client, its Lua scripts and a health flag;
and where its hand-made pub/sub connection goes (``Locator``).

Commands have short timeouts and are never retried by redis-py: a retried script could run
twice (a message stored twice). Any connection error or timeout marks the link down; while it
is down, operations fail at once with ``BrokerUnavailable`` (the client's ``unavailable``)
instead of queueing behind a dead Redis, and the heartbeat probes it back up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Protocol

from redis import exceptions as rexc
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis_url import SentinelTarget, Target
from wsops.server.broker.resp import Endpoint
from wsops.server.core.broker import BrokerUnavailable

log = logging.getLogger(__name__)

DOWN_ERRORS: tuple[type[BaseException], ...] = (
    rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, OSError, TimeoutError,
    rexc.ClusterDownError,  # a cluster that lost a master and has not promoted a replica yet
)
# A cluster node that no longer serves the slot (a failover or resharding): the command did not
# run; the topology is asked again and the caller told ``unavailable``.
REDIRECTS: tuple[type[BaseException], ...] = (rexc.AskError, rexc.TryAgainError)
SCRIPTS = {
    "publish": lua.PUBLISH, "read": lua.READ, "presence_set": lua.PRESENCE_SET,
    "presence_read": lua.PRESENCE_READ, "reap_room": lua.REAP_ROOM, "reap_node": lua.REAP_NODE,
    "heartbeat": lua.HEARTBEAT,
}


def brief(exc: BaseException) -> str:
    """An error for a log line or a client: redis-py's sentinel errors repr every client."""
    if isinstance(exc, MasterNotFoundError):
        return f"no sentinel names a healthy master ({str(exc).split(' : ')[0]})"
    return str(exc) or type(exc).__name__


class _SentinelBlockingPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's master-following connections, waiting for a free one like the plain pool."""


def _sentinel(target: SentinelTarget, timeout: float) -> Sentinel:
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": timeout, "socket_connect_timeout": timeout, "protocol": 2,
        "username": target.sentinel_username, "password": target.sentinel_password,
        "ssl": target.tls,
    }
    return Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)


def connect(target: Target, timeout: float, locator: Locator, max_connections: int = 64
            ) -> Redis:
    """A redis-py client with short timeouts and no retries (RESP2): a retried script could
    run twice. Under Sentinel it asks ``locator``'s sentinels (closed with the locator)."""
    common: dict[str, Any] = {
        "max_connections": max_connections, "timeout": timeout, "socket_timeout": timeout,
        "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0), "protocol": 2,
    }
    if target.url is not None:
        return Redis.from_pool(BlockingConnectionPool.from_url(target.url, **common))
    s = target.sentinel
    assert s is not None and locator.manager is not None
    return locator.manager.master_for(  # type: ignore[no-any-return]
        s.master, connection_pool_class=_SentinelBlockingPool, db=s.db, username=s.username,
        password=s.password, ssl=s.tls, **common)


class Locator:
    """The current master's address for a hand-made connection (the pub/sub feed): fixed for
    ``redis://``, asked of the sentinels for ``redis+sentinel://``. ``follows`` says whether
    the answer can change while a connection is open."""

    def __init__(self, target: Target, timeout: float) -> None:
        self.target = target
        self.endpoint: Endpoint | None = None
        self.manager: Sentinel | None = None
        if target.url is not None:
            self.endpoint = Endpoint.from_url(target.url)
        else:
            assert target.sentinel is not None
            self.manager = _sentinel(target.sentinel, timeout)

    @property
    def follows(self) -> bool:
        return self.manager is not None

    async def __call__(self) -> Endpoint:
        """Where to connect now; raises OSError (redis-py's ConnectionError is one) when no
        sentinel names a healthy master."""
        if self.manager is None:
            assert self.endpoint is not None
            return self.endpoint
        s = self.target.sentinel
        assert s is not None
        try:
            host, port = await self.manager.discover_master(s.master)
        except rexc.RedisError as exc:
            raise OSError(brief(exc)) from exc
        self.endpoint = Endpoint(host, int(port), s.username, s.password, s.tls)
        return self.endpoint

    async def close(self) -> None:
        if self.manager is not None:
            for client in self.manager.sentinels:
                await client.aclose()


class Link:
    """Commands and scripts, with the broker's view of whether Redis answers: to one Redis, the
    master Sentinel names, or (``sharded``) one master of a cluster, whose pub/sub is sharded
    and whose master can change (``redis_cluster``); ``on_moved`` hears of redirections."""

    def __init__(self, target: Target, timeout: float, locator: Locator, *,
                 sharded: bool = False, on_moved: Callable[[], None] | None = None) -> None:
        self.redis = connect(target, timeout, locator)
        self.locator = locator
        self.shown = target.shown
        # The scripts' last argument: check each room's master (redis_scripts._LINEAGE) where
        # the master can change under us.
        self.lineage = "1" if locator.follows or sharded else "0"
        self.on_moved = on_moved
        self.timeout = timeout
        self.up = False
        self.down_since: float | None = time.time()
        self.errors = 0
        self.skew_ms = 0.0  # Redis clock minus ours, from the heartbeat
        self.scripts = {name: self.redis.register_script(lua.sharded(src) if sharded else src)
                        for name, src in SCRIPTS.items()}
        self._loaded: set[str] = set()  # scripts run_replicated has loaded on this master

    def mark_down(self, exc: BaseException) -> None:
        self.errors += 1
        self._loaded.clear()  # maybe another master next time, without our scripts
        if self.up:
            log.warning("redis broker down (%s): %s", self.shown, brief(exc))
            self.down_since = time.time()
        self.up = False

    def mark_up(self) -> None:
        if not self.up:
            log.info("redis broker up (%s)", self.shown)
        self.up = True
        self.down_since = None

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Redis' errors as ``BrokerUnavailable``, the link marked down when Redis is."""
        try:
            yield
        except REDIRECTS as exc:
            if self.on_moved is not None:
                self.on_moved()
            raise BrokerUnavailable(f"broker unavailable: the slot moved ({exc})") from exc
        except DOWN_ERRORS as exc:
            self.mark_down(exc)
            raise BrokerUnavailable(f"broker unavailable: {brief(exc)}") from exc

    def check(self) -> None:
        if not self.up:
            raise BrokerUnavailable("broker down (Redis unreachable)")

    async def run(
        self, script: str, keys: Sequence[str], args: Sequence[Any], *, probe: bool = False
    ) -> Any:
        """Run a script; ``probe`` tries even while the link is marked down."""
        if not probe:
            self.check()
        with self._guard():
            result = await self.scripts[script](keys=list(keys), args=list(args))
        self.mark_up()
        return result

    async def run_replicated(
        self, script: str, keys: Sequence[str], args: Sequence[Any], replicas: int,
        wait_ms: int,
    ) -> tuple[Any, int]:
        """Run a script, then ``WAIT`` on the same connection until ``replicas`` replicas have
        its writes (at most ``wait_ms``): the script's result and how many replicas did."""
        self.check()
        s = self.scripts[script]
        with self._guard():
            if script not in self._loaded:  # a NOSCRIPT round would also wait for replicas
                await self.redis.script_load(s.script)
                self._loaded.add(script)
            for attempt in (0, 1):
                pipe = self.redis.pipeline(transaction=False)
                pipe.execute_command("EVALSHA", s.sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", replicas, wait_ms)
                result, acked = await pipe.execute(raise_on_error=False)
                if isinstance(result, rexc.NoScriptError) and attempt == 0:
                    await self.redis.script_load(s.script)  # not run: safe to send again
                    continue
                for answer in (result, acked):
                    if isinstance(answer, BaseException):
                        raise answer
                break
        self.mark_up()
        return result, int(acked)

    async def run_many(
        self, script: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
        *, probe: bool = False, chunk: int = 500,
    ) -> list[Any]:
        """Run a script for many key sets, pipelined ``chunk`` at a time."""
        if not probe:
            self.check()
        out: list[Any] = []
        with self._guard():
            for start in range(0, len(calls), chunk):
                pipe = self.redis.pipeline(transaction=False)
                for keys, args in calls[start:start + chunk]:
                    await self.scripts[script](keys=list(keys), args=list(args), client=pipe)
                out.extend(await pipe.execute())
        self.mark_up()
        return out

    async def call(self, *args: Any, probe: bool = False) -> Any:
        """One plain command."""
        if not probe:
            self.check()
        with self._guard():
            result = await self.redis.execute_command(*args)  # type: ignore[no-untyped-call]
        self.mark_up()
        return result

    def redis_ms(self) -> int:
        """Our estimate of Redis' clock, in ms."""
        return int(time.time() * 1000 + self.skew_ms)

    async def close(self) -> None:
        await self.redis.aclose()


async def measure_clock(link: Link) -> None:
    """Mark ``link`` up or down, and measure its Redis' clock against ours (``skew_ms``)."""
    sent = time.time()
    with suppress(BrokerUnavailable):
        secs, usecs = await link.call("TIME", probe=True)
        link.skew_ms = int(secs) * 1000 + int(usecs) / 1000 - (sent + time.time()) * 500


class Links(Protocol):
    """Which link serves a room and the node registry: one (``OneLink``) or a cluster's
    (``redis_cluster.Shards``)."""

    sharded: bool

    def room(self, room: str) -> Link: ...

    def registry(self) -> Link: ...

    def all(self) -> list[Link]: ...

    async def close(self) -> None: ...


class OneLink:
    """Every room and the registry on one link (one Redis, or the master Sentinel names)."""

    sharded = False

    def __init__(self, link: Link) -> None:
        self.link = link

    def room(self, room: str) -> Link:
        return self.link

    def registry(self) -> Link:
        return self.link

    def all(self) -> list[Link]:
        return [self.link]

    async def close(self) -> None:
        await self.link.close()
