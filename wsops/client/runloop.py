"""The client's connection state machine: one run loop that keeps a connection open.

The run loop connects, resubscribes every room from its last delivered position, sends what
waits in the queue, reads until the connection ends, then sleeps a full-jitter backoff (or,
after a drain's 1012 close with a reconnect hint, a delay drawn over the window the server asked
for) and starts over, until ``close()`` or a refused authentication. Sequencing (``tracker``),
rooms (``rooms``), request bookkeeping (``requests``), backoff math (``backoff``) and the wire
format (``wire``) live in socket-free modules; this one only moves frames between them and the
socket.
The request API is ``client.Client``, built on this class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

import aiohttp

from wsops.backoff import (
    DEFAULT_BASE,
    DEFAULT_CAP,
    Backoff,
    Uniform,
    full_jitter,
    reconnect_hint,
)
from wsops.client import wire
from wsops.client.connection import ABNORMAL_CLOSE, RefusedBody, RetryLater, open_socket
from wsops.client.errors import AuthError, ClientClosed, ProtocolViolation
from wsops.client.events import (
    ClientState,
    CloseInfo,
    Event,
    Gap,
    Message,
    PresenceEvent,
    SubscriptionLost,
)
from wsops.client.requests import RequestBook
from wsops.client.rooms import Room, Rooms, fail_future
from wsops.client.stream import Dispatcher

log = logging.getLogger("wsops.client")

# Seconds the closing handshake may take before the connection is dropped.
CLOSE_TIMEOUT: Final = 5.0


class ClientCore:
    """Connection lifecycle, reconnects and routing of incoming frames (see ``Client``)."""

    def __init__(
        self,
        url: str,
        token: str | Callable[[], str | None] | None = None,
        *,
        backoff_base: float = DEFAULT_BASE,
        backoff_cap: float = DEFAULT_CAP,
        max_queue: int = 1000,
        request_timeout: float | None = 10.0,
        heartbeat: float | None = None,
        on_message: Callable[[Message], object] | None = None,
        on_gap: Callable[[Gap], object] | None = None,
        on_presence: Callable[[PresenceEvent], object] | None = None,
        on_state: Callable[[ClientState], object] | None = None,
        on_lost: Callable[[SubscriptionLost], object] | None = None,
        session: aiohttp.ClientSession | None = None,
        connect_timeout: float | None = 10.0,
        stable_after: float = 5.0,
        uniform: Uniform | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self._backoff = Backoff(backoff_base, backoff_cap, uniform)
        self._book = RequestBook(max_queue)
        self._request_timeout = request_timeout
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        # A connection that stayed open this long resets the backoff to its smallest window.
        self._stable_after = stable_after
        self._dispatch = Dispatcher(on_message, on_gap, on_presence, on_state, on_lost)
        self._session = session
        self._owns_session = session is None
        self._rooms = Rooms()
        self._state = ClientState.CLOSED
        self._state_waiters: list[tuple[ClientState, asyncio.Future[None]]] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._first_open: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()  # the queue has something to send
        self._stop = asyncio.Event()  # close() was called: cut the backoff sleep short
        self._closing = False
        self._connecting = False
        self._was_open = False
        self._refused = RefusedBody()  # the body of a refused upgrade, on our own session
        self.error: BaseException | None = None
        self.closes: list[CloseInfo] = []  # how each connection ended, oldest first
        self.last_refusal: str | None = None  # why the last attempt failed, until one opens
        self.reconnects = 0

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def close_codes(self) -> list[int]:
        """The close code of each connection that ended, oldest first (``closes`` has the
        reasons too)."""
        return [c.code for c in self.closes]

    @property
    def rooms(self) -> list[str]:
        """The rooms the client follows (subscribed or subscribing)."""
        return self._rooms.names()

    def start(self) -> None:
        """Start the background run loop without waiting for a connection."""
        if self._closing:
            raise ClientClosed("client is closed")
        if self._run_task is not None:
            return
        self._first_open = asyncio.get_running_loop().create_future()
        self._set_state(ClientState.CONNECTING)
        self._run_task = asyncio.create_task(self._run(), name=f"wsops-client {self.url}")

    async def close(self) -> None:
        """Close the connection (code 1000), stop reconnecting and fail what is still pending."""
        self._closing = True
        self._stop.set()  # the run loop closes an open connection itself, then returns
        task = self._run_task
        if task is not None and not task.done():
            # A handshake in progress has nothing to finish cleanly; an open connection gets
            # time for the closing handshake.
            if not self._connecting:
                await asyncio.wait({task}, timeout=CLOSE_TIMEOUT + 1.0)
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        self._shutdown(self.error or ClientClosed("client closed"))
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def wait_for_state(self, state: ClientState, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Return once the client is in ``state`` (at once if it already is)."""
        if self._state is state:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (state, fut)
        self._state_waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            if entry in self._state_waiters:
                self._state_waiters.remove(entry)

    # -- run loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            while not self._closing:
                retry_after: float | None = None
                spread: float | None = None  # the server's reconnect hint (a drain's 1012)
                try:
                    if self._session is None:
                        self._session = aiohttp.ClientSession(
                            trace_configs=[self._refused.trace_config()])
                    self._connecting = True
                    try:
                        token = self._token() if callable(self._token) else self._token
                        ws = await open_socket(
                            self._session,
                            self.url,
                            token,
                            heartbeat=self._heartbeat,
                            connect_timeout=self._connect_timeout,
                            refused=self._refused,
                        )
                    finally:
                        self._connecting = False
                except AuthError as exc:
                    log.warning("wsops client: %s refused authentication: %s", self.url, exc)
                    error = exc
                    return
                except RetryLater as exc:
                    log.info("wsops client: connecting to %s failed: %s", self.url, exc)
                    self.last_refusal = str(exc)
                    retry_after = exc.retry_after
                else:
                    ended = await self._serve(ws)
                    spread = reconnect_hint(ended.code, ended.reason)
                if self._closing:
                    return
                delay = (self._backoff.spread(spread) if spread is not None
                         else self._backoff.next_delay(retry_after))
                log.debug("wsops client: next attempt in %.3f s", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        except Exception as exc:  # a bug here must not leave callers waiting forever
            log.exception("wsops client: run loop failed")
            error = exc
        finally:
            if error is not None:
                self.error = error
                self._shutdown(error)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> CloseInfo:
        """Run one open connection until it ends, then requeue what it left unanswered;
        returns how it ended."""
        loop = asyncio.get_running_loop()
        self._ws = ws
        opened_at = loop.time()
        if self._was_open:
            self.reconnects += 1
        self._was_open = True
        self.last_refusal = None
        for room, frame in self._rooms.resubscribe_frames():
            self._book.add(frame, urgent=True, resend=False).owner = room
        self._wake.set()
        self._set_state(ClientState.OPEN)
        if self._first_open is not None and not self._first_open.done():
            self._first_open.set_result(None)
        reader = asyncio.create_task(self._read_loop(ws))
        writer = asyncio.create_task(self._write_loop(ws))
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({reader, writer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            writer.cancel()
            stopper.cancel()
            if not ws.closed:
                # close() also ends a reader waiting in receive(); bounded for a dead peer.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT)
            reader.cancel()
            results = await asyncio.gather(reader, writer, stopper, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    log.warning("wsops client: connection failed: %r", result)
            self._ws = None
            sent = results[0]
            if isinstance(sent, CloseInfo):
                ended = sent
            else:
                code = ws.close_code
                ended = CloseInfo(int(code) if code is not None else ABNORMAL_CLOSE)
            self.closes.append(ended)
            if not self._closing:
                log.info("wsops client: connection to %s closed: %s", self.url, ended)
            self._book.connection_lost()
            self._rooms.disconnected()
            if loop.time() - opened_at >= self._stable_after:
                self._backoff.reset()
            if not self._closing:
                self._set_state(ClientState.RECONNECTING)
        return ended

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> CloseInfo | None:
        """Handle frames until the connection ends; returns the close code and reason the
        server sent, if it sent a close frame.

        aiohttp reports 1006 when the server's close frame arrived but the server dropped the
        socket before our reply could be written; the code the server chose is the useful one.
        """
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind is aiohttp.WSMsgType.TEXT:
                self._on_text(msg.data)
            elif kind is aiohttp.WSMsgType.CLOSE:
                return CloseInfo(int(msg.data), str(msg.extra or ""))
            elif kind in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return None
            elif kind is aiohttp.WSMsgType.ERROR:
                log.warning("wsops client: read failed: %r", msg.data)
                return None
            else:
                log.warning("wsops client: ignoring a %s frame", kind.name)

    async def _write_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            pending = self._book.next_to_send()
            if pending is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await ws.send_str(pending.text)

    # -- incoming frames -------------------------------------------------------------------

    def _on_text(self, text: str) -> None:
        try:
            frame = wire.decode(text)
        except ProtocolViolation as exc:
            log.warning("wsops client: bad frame from server: %s", exc)
            return
        events: list[Event] = []
        if isinstance(frame, Message):
            events = self._rooms.on_message(frame)
        elif isinstance(frame, PresenceEvent):
            events = self._rooms.on_presence(frame)
        elif isinstance(frame, wire.Unsubscribed):
            events = self._rooms.on_unsubscribed(frame)
        elif isinstance(frame, wire.Reply):
            pending = self._book.resolve(frame)
            if pending is None and not frame.ok:
                log.warning("wsops client: unmatched error reply: %s", frame.error())
            elif pending is not None and pending.op == "subscribe":
                owner = pending.owner
                outcome = self._rooms.on_subscribe_reply(
                    owner if isinstance(owner, Room) else None, frame)
                events = outcome.events
                if outcome.retry is not None:
                    self._schedule_resubscribe(outcome.retry)
        for event in events:
            if isinstance(event, SubscriptionLost):
                log.warning("wsops client: lost room %s: %s", event.room, event.code)
            self._dispatch.emit(event)

    def _schedule_resubscribe(self, room: Room) -> None:
        ws = self._ws
        delay = full_jitter(room.retries - 1, self._backoff.base, self._backoff.cap)

        def retry() -> None:
            if self._ws is ws and self._rooms.get(room.name) is room and not room.tracker.synced:
                frame = self._rooms.resubscribe_frame(room)
                if frame is not None:
                    self._book.add(frame, urgent=True, resend=False).owner = room
                    self._wake.set()

        asyncio.get_running_loop().call_later(delay, retry)

    # -- state -----------------------------------------------------------------------------

    def _set_state(self, state: ClientState) -> None:
        if state is self._state:
            return
        self._state = state
        for want, fut in list(self._state_waiters):
            if want is state and not fut.done():
                fut.set_result(None)
        self._dispatch.state(state)

    def _shutdown(self, error: BaseException) -> None:
        """Everything still pending fails with ``error``; the client ends closed."""
        self._closing = True
        self._stop.set()
        self._book.fail_all(error)
        self._rooms.fail_all(error)
        if self._first_open is not None:
            fail_future(self._first_open, error)
        self._dispatch.close()
        self._set_state(ClientState.CLOSED)
        for _, fut in self._state_waiters:
            fail_future(fut, error)
