"""A real fleet per test: redis-server, three ``wsops serve`` nodes and HAProxy, started by
``examples/fleet/fleet.py`` (so the example is what the tests prove) on free loopback ports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp
import pytest

from tests.support.examples import BROKER_OPTIONS, FLEET_EXAMPLE, load_example, need_binaries
from tests.support.scrape import Scrape, scrape
from wsops.client import Client, ClientState, Gap, Message

fleet_example = load_example(FLEET_EXAMPLE)
Fleet = fleet_example.Fleet

@pytest.fixture
async def fleet() -> AsyncIterator[Any]:
    need_binaries()
    f = Fleet(broker_options=BROKER_OPTIONS)
    try:
        await asyncio.to_thread(f.start)
        yield f
    finally:
        await asyncio.to_thread(f.close)


def clients(url: str, n: int, **kwargs: Any) -> list[Client]:
    opts: dict[str, Any] = {"backoff_base": 0.05, "backoff_cap": 1.0, "request_timeout": 10.0}
    return [Client(url, **{**opts, **kwargs}) for _ in range(n)]


async def connect_all(cs: Sequence[Client], batch: int = 50) -> None:
    for i in range(0, len(cs), batch):
        await asyncio.gather(*(c.connect(timeout=20) for c in cs[i:i + batch]))


async def close_all(cs: Sequence[Client]) -> None:
    await asyncio.gather(*(c.close() for c in cs), return_exceptions=True)


async def wait_open(cs: Sequence[Client], within: float = 30.0) -> None:
    await asyncio.gather(*(c.wait_for_state(ClientState.OPEN, within) for c in cs))


async def stats(admin_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(admin_url + "/admin/stats") as r:
        r.raise_for_status()
        body: dict[str, Any] = await r.json()
        return body


async def connections(fleet: Any) -> list[int]:
    """Open connections per node (a dead node counts 0)."""
    out = []
    for node in fleet.nodes:
        out.append((await stats(node.admin_url))["connections"] if node.proc.alive else 0)
    return out


async def metrics(fleet: Any) -> list[Scrape]:
    return [await scrape(n.admin_url) for n in fleet.nodes]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class Watched:
    """``n`` clients through HAProxy that record their messages, gaps, and when each one's
    connection first dropped and was open again."""

    def __init__(self, url: str, n: int) -> None:
        self.got: list[list[Message]] = [[] for _ in range(n)]
        self.times: list[list[float]] = [[] for _ in range(n)]  # when each message arrived
        self.gaps: list[Gap] = []
        self.closed_at: dict[int, float] = {}
        self.reopened_at: dict[int, float] = {}
        self.clients = [clients(url, 1, on_message=self._on_message(i),
                                on_gap=self.gaps.append, on_state=self._on_state(i))[0]
                        for i in range(n)]

    def _on_message(self, i: int) -> Callable[[Message], None]:
        def got(message: Message) -> None:
            self.got[i].append(message)
            self.times[i].append(time.time())
        return got

    def _on_state(self, i: int) -> Callable[[ClientState], None]:
        def seen(state: ClientState) -> None:
            if state is ClientState.RECONNECTING:
                self.closed_at.setdefault(i, time.monotonic())
            elif state is ClientState.OPEN and i in self.closed_at:
                self.reopened_at.setdefault(i, time.monotonic())
        return seen

    def reconnect_seconds(self) -> list[float]:
        """For each client that moved: from its drop to its next open connection."""
        return [self.reopened_at[i] - self.closed_at[i] for i in self.closed_at]
