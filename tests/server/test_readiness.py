"""/readyz answers 200 only once the node serves: its admin listener starts first, then the
broker (a Redis Cluster takes a while to map), then the WebSocket port is bound. Before, /readyz
said ready through all of it, and a client sent there by it (a test, a load balancer, a rollout)
found the port closed."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.ports import free_port
from wsops.config import Settings
from wsops.server.app import NODE_KEY, Node, running
from wsops.server.broker.memory import MemoryBroker


class HeldBroker(MemoryBroker):
    """The in-memory broker whose start waits for ``go`` (a broker slow to reach)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.starting = asyncio.Event()

    async def start(self) -> None:
        self.starting.set()
        await self.go.wait()
        await super().start()


async def _readyz(url: str) -> tuple[int, object]:
    async with aiohttp.ClientSession() as s, s.get(url + "/readyz") as r:
        return r.status, await r.json()


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def test_readyz_says_starting_until_the_broker_is_up_and_the_port_bound() -> None:
    broker = HeldBroker()
    port, admin = free_port(), free_port()
    settings = Settings(port=port, admin_port=admin, allow_anonymous=True)
    serving, done = asyncio.Event(), asyncio.Event()

    async def serve() -> None:
        async with running(settings, broker) as (app, _, _):
            assert app[NODE_KEY].listening is True
            serving.set()
            await done.wait()

    task = asyncio.create_task(serve())
    try:
        await asyncio.wait_for(broker.starting.wait(), 10)
        admin_url = f"http://127.0.0.1:{admin}"
        status, body = await _readyz(admin_url)
        assert status == 503 and body == {"ready": False, "reasons": ["starting"]}, body
        assert not await _port_open(port)
        broker.go.set()
        await asyncio.wait_for(serving.wait(), 10)
        assert await _port_open(port)
        assert (await _readyz(admin_url))[0] == 200
    finally:
        done.set()
        await asyncio.wait_for(task, 10)


def test_a_started_node_whose_port_is_not_bound_yet_is_not_ready() -> None:
    node = Node(Settings(allow_anonymous=True))
    assert node.starting_reason() == "starting"
    node.started = True
    assert node.starting_reason() is None  # an embedding app's runner: its sites come after
    node.listening = False  # ``running`` binds the port after the app's start
    assert node.starting_reason() == "starting: the WebSocket port is not bound yet"
    node.listening = True
    assert node.starting_reason() is None
