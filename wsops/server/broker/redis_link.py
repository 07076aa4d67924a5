"""The Redis broker's command side: one redis-py client, its Lua scripts and a health flag.

Commands have short timeouts and are never retried by redis-py: a retried script could run
twice (a message stored twice). Any connection error or timeout marks the link down; while it
is down, operations fail at once with ``BrokerUnavailable`` (the client's ``unavailable``)
instead of queueing behind a dead Redis, and the heartbeat probes it back up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import exceptions as rexc
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from wsops.server.broker import redis_scripts as lua
from wsops.server.core.broker import BrokerUnavailable

log = logging.getLogger(__name__)

DOWN_ERRORS: tuple[type[BaseException], ...] = (
    rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, OSError, TimeoutError,
)
SCRIPTS = {
    "publish": lua.PUBLISH, "read": lua.READ, "presence_set": lua.PRESENCE_SET,
    "presence_read": lua.PRESENCE_READ, "reap_room": lua.REAP_ROOM, "reap_node": lua.REAP_NODE,
    "heartbeat": lua.HEARTBEAT,
}


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """wsops' own query parameters of the broker URL (removed before redis-py sees it)."""

    prefix: str = "wsops"
    heartbeat: float = 2.0  # seconds between node heartbeats; a node is dead after 3
    timeout: float = 2.0  # command timeout; the pub/sub link is dead after 1.5x this silent


def parse_broker_url(url: str) -> tuple[str, RedisOptions]:
    """Split ``redis://HOST:PORT/DB?prefix=P&heartbeat=S&timeout=S`` into the URL for
    redis-py and the options; raises ValueError on a bad value."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"broker URL must start with redis:// or rediss://, not {url!r}")
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query):
        if key in ("prefix", "heartbeat", "timeout"):
            ours[key] = value
        else:
            rest.append((key, value))
    opts = RedisOptions()
    try:
        opts = RedisOptions(ours.get("prefix", opts.prefix),
                            float(ours.get("heartbeat", opts.heartbeat)),
                            float(ours.get("timeout", opts.timeout)))
    except ValueError:
        raise ValueError(f"bad broker URL options in {url!r}") from None
    if not opts.prefix or opts.heartbeat <= 0 or opts.timeout <= 0:
        raise ValueError(f"bad broker URL options in {url!r}")
    return urlunsplit(parts._replace(query=urlencode(rest))), opts


def connect(url: str, timeout: float, max_connections: int = 64) -> Redis:
    """A redis-py client with short timeouts and no retries (RESP2)."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout, socket_timeout=timeout,
        socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0), protocol=2,
    )
    return Redis.from_pool(pool)


class Link:
    """Commands and scripts, with the broker's view of whether Redis answers."""

    def __init__(self, url: str, timeout: float) -> None:
        self.redis = connect(url, timeout)
        self.timeout = timeout
        self.up = False
        self.down_since: float | None = time.time()
        self.errors = 0
        self.skew_ms = 0.0  # Redis clock minus ours, from the heartbeat
        self.scripts = {name: self.redis.register_script(src) for name, src in SCRIPTS.items()}

    def mark_down(self, exc: BaseException) -> None:
        self.errors += 1
        if self.up:
            log.warning("redis broker down: %r", exc)
            self.down_since = time.time()
        self.up = False

    def mark_up(self) -> None:
        if not self.up:
            log.info("redis broker up")
        self.up = True
        self.down_since = None

    def check(self) -> None:
        if not self.up:
            raise BrokerUnavailable("broker down (Redis unreachable)")

    async def run(
        self, script: str, keys: Sequence[str], args: Sequence[Any], *, probe: bool = False
    ) -> Any:
        """Run a script; ``probe`` tries even while the link is marked down."""
        if not probe:
            self.check()
        try:
            result = await self.scripts[script](keys=list(keys), args=list(args))
        except DOWN_ERRORS as exc:
            self.mark_down(exc)
            raise BrokerUnavailable(f"broker unavailable: {exc}") from exc
        self.mark_up()
        return result

    async def run_many(
        self, script: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
        *, probe: bool = False, chunk: int = 500,
    ) -> list[Any]:
        """Run a script for many key sets, pipelined ``chunk`` at a time."""
        if not probe:
            self.check()
        out: list[Any] = []
        try:
            for start in range(0, len(calls), chunk):
                pipe = self.redis.pipeline(transaction=False)
                for keys, args in calls[start:start + chunk]:
                    await self.scripts[script](keys=list(keys), args=list(args), client=pipe)
                out.extend(await pipe.execute())
        except DOWN_ERRORS as exc:
            self.mark_down(exc)
            raise BrokerUnavailable(f"broker unavailable: {exc}") from exc
        self.mark_up()
        return out

    async def call(self, *args: Any, probe: bool = False) -> Any:
        """One plain command."""
        if not probe:
            self.check()
        try:
            result = await self.redis.execute_command(*args)  # type: ignore[no-untyped-call]
        except DOWN_ERRORS as exc:
            self.mark_down(exc)
            raise BrokerUnavailable(f"broker unavailable: {exc}") from exc
        self.mark_up()
        return result

    def redis_ms(self) -> int:
        """Our estimate of Redis' clock, in ms."""
        return int(time.time() * 1000 + self.skew_ms)

    async def close(self) -> None:
        await self.redis.aclose()
