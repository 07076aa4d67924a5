"""What the core reports, and how it writes: the interfaces it is given, never imports.

The core counts what is cheap to count in plain integers (``HubStats``); everything else it
hands to an observer passed in by the asyncio layer (``wsops.server.observe`` turns it into
metrics and spans). ``None`` observes nothing and costs nothing per message. A ``Sink`` is where
a connection's frames go: an ``asyncio.Transport`` in the server, a list in the core's tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from wsops.server.core.broker import Published
from wsops.server.core.debugtargets import DebugTargets
from wsops.server.core.protocol import Request

Publish = Callable[[str, bytes, "str | None", "str | None", "str | None"], Awaitable[Published]]
"""``Broker.publish``: (room, data, traceparent, sender, tracestate) -> the message as stored."""


class Sink(Protocol):
    """The writing half of a connection's transport (``asyncio.Transport`` has all of it)."""

    def write(self, data: bytes) -> None: ...

    def writelines(self, data: list[bytes]) -> None:
        """Write every frame of ``data`` (taken at once: the caller empties the list next)."""

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...

    def abort(self) -> None: ...


class HubObserver(Protocol):
    """Called once per publish that reaches local subscribers, and once per end-of-tick flush:
    never per delivery."""

    def fanout(self, msg: Published, subscribers: int) -> bool:
        """``msg`` was queued for ``subscribers`` connections. True asks for ``flushed`` to be
        called at the end of this tick even if nothing else was queued."""

    def flushed(self) -> None:
        """The tick's frames were handed to the sockets."""


class SessionObserver(Protocol):
    """What sessions report beyond the hub's counters."""

    quiet: int
    """How many of the next publishes without a traceparent ``publish_started`` would answer
    None (not traced) for; a session may skip the call for them, taking one off ``quiet``
    instead (0: always call)."""

    def rate_limited(self) -> None:
        """A frame was refused by the connection's rate limit."""

    def served(self, op: str, started: float, code: str | None) -> None:
        """A frame that passed the rate limit was served: ``op`` (``"invalid"`` when it did
        not parse), since ``started`` (``time.perf_counter``), failed with ``code`` or None."""

    def resumed(self, recovered: bool) -> None:
        """A subscribe asked to resume from an offset: whether everything since was there."""

    def publish_started(self, req: Request) -> object:
        """``req``, a client's publish, goes to the broker next: a handle for the two calls
        below (the observer may decide to trace it, and then rewrites ``req.traceparent`` and
        ``req.tracestate`` to what the message's envelope carries). With no traceparent and
        ``quiet`` above 0 it only takes one off ``quiet`` and answers None."""

    def publish_stored(self, handle: object, msg: Published, started: float,
                       client: bool) -> None:
        """The broker stored it as ``msg``, since ``started`` (``time.perf_counter``, read
        after ``publish_started``); ``client``: a client's publish (it has a sender)."""

    def publish_failed(self, handle: object, error: Exception) -> None:
        """The broker refused or failed it (``error`` is raised on to the session)."""


class DebugTap(Protocol):
    """A node's debug switch and taps as a session sees them (``wsops.server.debug``): while
    ``targets.active``, each request is checked against what is watched; a watched one is
    handed over (logged, streamed to taps), and a publish a debug target watches goes through
    ``publish``, which traces it whatever the ratio."""

    targets: DebugTargets
    publish: Publish | None  # None when the node does not trace

    def received(self, conn_id: int, user: str, text: str, room: str | None, op: str) -> None:
        """A watched connection sent ``text`` (about ``room``; ``op`` "invalid" when it did
        not parse)."""
