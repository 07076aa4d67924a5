"""The framework packages of clients/ in headless Chromium, against real ``wsops serve`` nodes.

Each example page (built once per session with its package's own tool, see packages.py) follows
a room through its integration: the React hook, the Vue composable, the Angular service. It
shows what the integration holds in the same DOM for all three (#state; #messages li with
data-offset, the sender and the text; #users li; #gaps), which the test reads back. Two nodes
share a Redis broker: the page is on node a, the publisher and a second member on node b, so
node a can restart while the room goes on. In phases:

- history, then live messages (one published from the page's own form), and presence;
- node a restarts while messages are published on b: the page resumes, each message shown once,
  in order;
- node a is down for longer than history holds: a gap, and the page reloads history;
- the other member leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client_js.frameworks.packages import FRAMEWORKS, ExamplePages
from tests.client_js.servers import Server
from tests.support.artifacts import record
from tests.support.chromium import CHROMIUM, Page, static_page
from tests.support.redisproc import RedisProc, broker_url, redis_server_binary
from tests.support.tokens import SECRET, hs
from tests.support.waits import until
from wsops.client import Client

HISTORY = 20  # the nodes' --history-size
LIMIT = 50  # the example pages' `limit`: history loaded, messages kept
WAIT = 20.0  # seconds

# What an example page shows, as JSON.
READ = """(() => {
  const items = [...document.querySelectorAll("#messages li")];
  return {
    state: document.getElementById("state")?.dataset.state ?? null,
    offsets: items.map((e) => Number(e.dataset.offset)),
    last: Number(items.at(-1)?.dataset.offset ?? 0),
    epochs: [...new Set(items.map((e) => e.dataset.epoch))].length,
    texts: items.map((e) => e.querySelector(".text")?.textContent),
    senders: items.map((e) => e.querySelector("b")?.textContent),
    users: [...document.querySelectorAll("#users li")].map((e) => e.dataset.user),
    gaps: Number(document.getElementById("gaps")?.dataset.gaps ?? 0),
    loading: document.getElementById("loading") !== null,
    error: document.getElementById("error")?.textContent ?? null,
  };
})()"""

# Type into the page's form and send, as a user would: the input's own value setter, then an
# input event (what React, Vue's v-model and Angular's (input) listen to), then a click.
SEND = """((text) => {
  const input = document.getElementById("text");
  Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set.call(input, text);
  input.dispatchEvent(new Event("input", { bubbles: true }));
  document.getElementById("send").click();
})"""


@pytest.fixture(scope="session")
def example_pages(tmp_path_factory: pytest.TempPathFactory) -> ExamplePages:
    return ExamplePages(tmp_path_factory.mktemp("example-pages"))


@pytest.fixture
def example(framework: str, example_pages: ExamplePages) -> Path:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/test.sh installs it)")
    return example_pages.get(framework)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Nodes a and b on one throwaway Redis (tokens signed with tests/support/tokens.SECRET)."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs it)")
    redis = RedisProc()
    redis.start()
    args = ["--jwt-secret", SECRET, "--broker", broker_url(redis), "--history-size",
            str(HISTORY), "--rate-limit", "1000", "--rate-burst", "1000"]
    servers: list[Server] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            servers.append(Server(tmp_path / name, *args))
            servers[-1].start()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop(signal.SIGKILL)
        redis.close()


@contextlib.asynccontextmanager
async def open_page(example: Path, ws_url: str, user: str, room: str) -> AsyncIterator[Page]:
    """The built example page in headless Chromium, signed in as ``user``, following ``room``."""
    query = urllib.parse.urlencode({"ws": ws_url, "token": hs(sub=user), "room": room})
    async with static_page(example, f"index.html?{query}") as page:
        yield page


async def shows(page: Page, **expected: Any) -> dict[str, Any]:
    """Until the page shows ``expected`` (keys of READ); returns all it shows then."""
    last: dict[str, Any] = {}

    async def matches() -> bool:
        last.update(await page.evaluate(READ))
        return all(last[key] == value for key, value in expected.items())

    await until(matches, WAIT, step=0.05,
                what=lambda: f"the page to show {expected}; it shows {last}; "
                             f"console: {page.console[-20:]}")
    return last


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_example_page_follows_a_room(framework: str, example: Path,
                                           nodes: tuple[Server, Server]) -> None:
    a, b = nodes
    room = f"chat:{framework}"
    texts: list[str] = []  # the room's messages: texts[i] is at offset i + 1

    async def publish(client: Client, *new: str) -> None:
        for text in new:
            ack = await client.publish(room, {"text": text})
            texts.append(text)
            assert ack.offset == len(texts)

    def everything() -> dict[str, Any]:
        return {"texts": texts, "offsets": list(range(1, len(texts) + 1)), "epochs": 1}

    figures: dict[str, Any] = {"framework": framework}
    async with Client(b.url, hs(sub="pub")) as pub:
        await publish(pub, "h1", "h2", "h3")
        async with open_page(example, a.url, "alice", room) as page:
            # History first, then live messages after it, each once; alice sees herself.
            await shows(page, state="open", loading=False, users=["alice"], **everything())
            await publish(pub, "l4", "l5")
            await page.evaluate(f"{SEND}({json.dumps('from the page')})")
            texts.append("from the page")
            shown = await shows(page, **everything())
            assert shown["senders"] == ["pub"] * 5 + ["alice"]  # as the server attests them
            await publish(pub, "l7")
            await shows(page, **everything())

            async with Client(b.url, hs(sub="bob")) as bob:
                await bob.subscribe(room)
                await shows(page, users=["alice", "bob"])

                # Node a restarts while the room goes on: resumed, nothing twice or missing.
                t0 = time.monotonic()
                await asyncio.to_thread(a.stop, signal.SIGTERM)
                await shows(page, state="reconnecting")
                await publish(pub, *(f"r{i}" for i in range(8, 13)))
                await asyncio.to_thread(a.start)
                await shows(page, state="open", gaps=0, users=["alice", "bob"], **everything())
                figures["restart_resumed_s"] = round(time.monotonic() - t0, 3)
                await publish(pub, "after the restart")
                await shows(page, gaps=0, **everything())

                # Down for longer than history holds: a gap, and history reloaded in its place,
                # while messages go on (live ones overlap the reloaded history).
                last_seen = len(texts)
                t0 = time.monotonic()
                await asyncio.to_thread(a.stop, signal.SIGTERM)
                await shows(page, state="reconnecting")
                await publish(pub, *(f"g{i}" for i in range(len(texts) + 1, len(texts) + 201)))
                stop = asyncio.Event()

                async def go_on() -> None:
                    while not stop.is_set():
                        await publish(pub, f"g{len(texts) + 1}")
                        await asyncio.sleep(0.005)

                publisher = asyncio.create_task(go_on())
                await asyncio.to_thread(a.start)
                await shows(page, state="open", gaps=1, loading=False, users=["alice", "bob"])
                figures["gap_reloaded_s"] = round(time.monotonic() - t0, 3)
                await asyncio.sleep(0.2)  # live messages after the reload, too
                stop.set()
                await publisher
                shown = await shows(page, gaps=1, last=len(texts))
                offsets = shown["offsets"]
                assert HISTORY <= len(offsets) <= LIMIT, shown
                assert offsets == list(range(len(texts) - len(offsets) + 1, len(texts) + 1))
                assert shown["texts"] == [texts[o - 1] for o in offsets]
                assert offsets[0] > last_seen + 1  # the room's history no longer held those
                assert shown["epochs"] == 1 and shown["error"] is None
                figures["published_after_restart"] = len(texts) - last_seen - 200

            # bob's client closed: he left the room.
            await shows(page, users=["alice"])
            problems = [line for line in page.console if line.startswith(("exception", "error"))]
            assert not problems, problems
    record(f"client-frameworks-{framework}.json", figures)
