"""Headless Chromium driven over the DevTools protocol (CDP) with aiohttp: no extra dependency.

``Chromium.start()`` launches Debian's ``chromium`` in a temporary profile with
``--remote-debugging-port=0``, reads the port it chose from ``DevToolsActivePort`` and opens the
first page's CDP socket. A ``Page`` can navigate, evaluate JavaScript (awaiting promises, values
returned as JSON) and take screenshots; console messages and uncaught exceptions are kept so a
failing test can show what the page said.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.ports import serving
from tests.support.waits import until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class PageError(AssertionError):
    """JavaScript evaluated in the page threw."""


class Page:
    """One tab's CDP session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.console: list[str] = []
        self.requests: list[str] = []  # URLs asked for (with Network.enable)
        self.log_errors: list[str] = []  # the browser's own errors (with Log.enable): CSP...
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            fut = self._waiting.pop(data.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled":
                params = data["params"]
                args = params["args"]
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                self.console.append(f"{params['type']}: {text}")
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                self.console.append(f"exception: {_describe(details)}")
            elif data.get("method") == "Network.requestWillBeSent":
                self.requests.append(str(data["params"]["request"]["url"]))
            elif data.get("method") == "Log.entryAdded":
                entry = data["params"]["entry"]
                if entry.get("level") == "error":
                    self.log_errors.append(f"{entry.get('source')}: {entry.get('text')}")
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("chromium went away"))

    async def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = fut
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    async def goto(self, url: str, timeout: float = 30.0) -> None:
        """Load ``url`` and wait until the document (and its module scripts) finished loading."""
        await self.send("Page.navigate", url=url)
        await asyncio.sleep(0.05)  # the old document may still say "complete" at once

        async def loaded() -> bool:
            return bool(await self.evaluate("document.readyState") == "complete")

        await until(loaded, timeout, step=0.05,
                    what=lambda: f"{url} to finish loading; console: {self.console}")

    async def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The JSON value of ``expression`` (a promise is awaited)."""
        result = await self.send(
            "Runtime.evaluate", timeout, expression=expression, awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            raise PageError(f"{_describe(result['exceptionDetails'])}; console: {self.console}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; returns its value."""
        return await until(lambda: self.evaluate(expression), timeout, step=0.1,
                           what=lambda: f"{expression!r}; console: {self.console[-20:]}")

    async def screenshot(self, path: Path, max_height: int | None = None) -> Path:
        """A PNG of the page, the whole of it (or its top ``max_height`` CSS pixels)."""
        clip: dict[str, Any] = {}
        if max_height is not None:
            size = await self.evaluate("[document.documentElement.scrollWidth, "
                                       "document.documentElement.scrollHeight]")
            clip = {"clip": {"x": 0, "y": 0, "width": size[0],
                             "height": min(size[1], max_height), "scale": 1}}
        data = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                               **clip)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(data["data"]))
        return path

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


def _describe(details: dict[str, Any]) -> str:
    exc = details.get("exception") or {}
    return str(exc.get("description") or details.get("text") or details)


class Chromium:
    """A headless Chromium process and its CDP endpoint."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="wsops-chromium-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    async def start(self, timeout: float = 30.0) -> None:
        """Launch it and wait for its DevTools port. A launch that fails (it exits, or
        writes no port in time) is tried once more on a fresh profile, the first failure
        kept as a warning: a CI run once saw the first launch of a run fail at setup."""
        if CHROMIUM is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        try:
            await self._launch(timeout)
        except (RuntimeError, AssertionError) as first:
            self._kill()
            self._dir.cleanup()
            self._dir = tempfile.TemporaryDirectory(prefix="wsops-chromium-")
            warnings.warn(f"chromium launch, attempt 1: {first}", stacklevel=2)
            await self._launch(timeout)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    async def _launch(self, timeout: float) -> None:
        assert CHROMIUM is not None
        profile = Path(self._dir.name)
        args = [
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking",
            "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
            "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
            "--window-size=1280,900", f"--user-data-dir={profile}", "about:blank",
        ]
        with (profile / "chromium.log").open("wb") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        marker = profile / "DevToolsActivePort"
        proc = self._proc

        def log_tail() -> str:
            return (profile / "chromium.log").read_text()[-2000:]

        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode}: {log_tail()}")
            return marker.exists() and len(marker.read_text().splitlines()) >= 2

        await until(listening, timeout, step=0.05,
                    what=lambda: f"chromium to write its DevTools port: {log_tail()}")
        self.port = int(marker.read_text().splitlines()[0])
        self._session = aiohttp.ClientSession()

    async def new_page(self) -> Page:
        assert self._session is not None
        base = f"http://127.0.0.1:{self.port}"
        async with self._session.put(f"{base}/json/new?about:blank") as resp:
            target = await resp.json()
        ws = await self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        return page

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(self._proc.wait, 10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._dir.cleanup()


@contextlib.asynccontextmanager
async def static_page(directory: Path, path: str) -> AsyncIterator[Page]:
    """``directory`` served on a free loopback port, and ``path`` (with its query) of it open in
    a fresh headless Chromium for the block."""
    app = web.Application()
    app.router.add_static("/", directory)
    async with serving(app, access_log=None) as port:
        browser = Chromium()
        try:
            await browser.start()
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/{path}")
            yield page
            await page.close()
        finally:
            await browser.stop()
