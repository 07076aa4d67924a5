"""The fleet's revocations in Redis: one hash (``Keys.revoked``), field ``KIND:VALUE``, value
the Unix time the revocation ends; expired fields are deleted by whoever reads them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from wsops.server.broker.redis_scripts import Keys


async def store_revocation(redis: Any, keys: Keys, kind: str, value: str, until: float,
                           timeout: float) -> None:  # noqa: ASYNC109
    await asyncio.wait_for(redis.hset(keys.revoked, f"{kind}:{value}", repr(until)), timeout)


async def read_revocations(redis: Any, keys: Keys, timeout: float  # noqa: ASYNC109
                           ) -> list[tuple[str, str, float]]:
    raw = await asyncio.wait_for(redis.hgetall(keys.revoked), timeout)
    now = time.time()
    out: list[tuple[str, str, float]] = []
    expired = []
    for field, at in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        kind, _, value = name.partition(":")
        try:
            until = float(at)
        except ValueError:
            continue
        if until <= now:
            expired.append(field)
        else:
            out.append((kind, value, until))
    if expired:
        await asyncio.wait_for(redis.hdel(keys.revoked, *expired), timeout)
    return out
