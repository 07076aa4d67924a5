"""Where wsops-client.js runs for a test: headless Chromium (a real page) or Node.

Both hosts load ``probe.mjs`` and answer ``call(method, *args)`` with plain JSON, so one Python
test drives the same scenario in both. In Chromium the page is served by a small static server
of the test and imports the client from the wsops node's ``/static/wsops-client.js`` (across
origins, as a page of a user's own site would); Node imports the same file from the package.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.support.chromium import CHROMIUM, Page, static_page

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")
TSC = HERE / "node_modules" / ".bin" / "tsc"  # from tests/client_js/package.json (npm ci)
CLIENT = HERE.parents[1] / "wsops" / "static" / "wsops-client.js"
# The page's <meta name="traceparent">; Node gets it as the client's `traceparent` option.
PAGE_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class JsError(Exception):
    """A probe call rejected: ``name`` is the JavaScript error class (QueueFullError...)."""

    def __init__(self, name: str, code: str | None, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.code = code


def _value(answer: dict[str, Any]) -> Any:
    if not answer["ok"]:
        raise JsError(answer["error"], answer.get("code"), answer["message"])
    return answer["value"]


class NodeHost:
    kind = "node"

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._ids = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.stderr: list[str] = []
        self._readers = [asyncio.create_task(self._read_stdout()),
                         asyncio.create_task(self._read_stderr())]

    async def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        async for line in self._proc.stdout:
            answer = json.loads(line)
            fut = self._waiting.pop(answer["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(answer)
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(RuntimeError(f"node exited: {self.stderr[-20:]}"))

    async def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        async for line in self._proc.stderr:
            self.stderr.append(line.decode(errors="replace").rstrip())

    async def call(self, method: str, *args: Any, timeout: float = 30.0) -> Any:
        """Calls may overlap: answers are matched by id."""
        assert self._proc.stdin is not None
        self._ids += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._ids] = fut
        line = json.dumps({"id": self._ids, "method": method, "args": list(args)})
        self._proc.stdin.write(line.encode() + b"\n")
        await self._proc.stdin.drain()
        return _value(await asyncio.wait_for(fut, timeout))

    def client_options(self) -> dict[str, Any]:
        return {"traceparent": PAGE_TRACEPARENT}

    async def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 10)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


class ChromiumHost:
    kind = "chromium"

    def __init__(self, page: Page) -> None:
        self.page = page

    async def call(self, method: str, *args: Any, timeout: float = 30.0) -> Any:
        expr = f"probe.run({json.dumps(method)}, {json.dumps(list(args))})"
        return _value(await self.page.evaluate(expr, timeout))

    def client_options(self) -> dict[str, Any]:
        return {}  # the page's <meta name="traceparent"> is the default

    @property
    def stderr(self) -> list[str]:
        return self.page.console


async def _node_needs_flag() -> bool:
    """Node 20 has a WHATWG WebSocket only behind --experimental-websocket (22 has it always)."""
    assert NODE is not None
    proc = await asyncio.create_subprocess_exec(
        NODE, "-e", "process.exit(typeof WebSocket === 'undefined' ? 1 : 0)")
    return await proc.wait() != 0


@contextlib.asynccontextmanager
async def node_host() -> AsyncIterator[NodeHost]:
    if NODE is None:
        raise RuntimeError("node is not installed")
    flags = ["--experimental-websocket"] if await _node_needs_flag() else []
    proc = await asyncio.create_subprocess_exec(
        NODE, "--no-warnings", *flags, str(HERE / "node_host.mjs"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    host = NodeHost(proc)
    try:
        yield host
    finally:
        await host.close()


@contextlib.asynccontextmanager
async def chromium_host(client_url: str) -> AsyncIterator[ChromiumHost]:
    """A page that imported ``client_url`` (the node's /static/wsops-client.js) and probe.mjs."""
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed")
    async with static_page(HERE, f"page.html?client={client_url}") as page:
        await page.wait_for("window.probe !== undefined", timeout=15)
        yield ChromiumHost(page)


@contextlib.asynccontextmanager
async def js_host(kind: str, client_url: str) -> AsyncIterator[NodeHost | ChromiumHost]:
    if kind == "node":
        async with node_host() as host:
            yield host
    else:
        async with chromium_host(client_url) as chrome:
            yield chrome
