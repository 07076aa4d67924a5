"""Exceptions raised by the client, all under ``ClientError`` so one ``except`` catches them.

Errors that follow a failure of the connection say what the server said about it: a refused
upgrade its HTTP status and reason, a closed connection its close code and reason.
"""

from __future__ import annotations

from wsops.client.events import CloseInfo


class ClientError(Exception):
    """Base of every error the wsops client raises."""


class ServerError(ClientError):
    """The server answered a request with ``ok: false``; the operation had no effect."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AuthError(ClientError):
    """The server refused the handshake with HTTP 401 or 403; retrying will not help.

    ``reason`` is what the server said (for example ``token expired``), else the status's name.
    """

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(f"HTTP {status}{': ' + reason if reason else ''}")
        self.status = status
        self.reason = reason


class QueueFull(ClientError):
    """The outgoing queue holds ``max_queue`` unsent requests; the request was not queued."""


def _why(closed: CloseInfo | None, refused: str | None) -> str:
    """What went wrong with the connection meanwhile, as the end of a timeout's message."""
    parts = []
    if closed is not None:
        parts.append(f"the server closed the connection with {closed}")
    if refused is not None:
        parts.append(f"the last connection attempt failed: {refused}")
    return "; " + "; ".join(parts) if parts else ""


class RequestTimeout(ClientError, TimeoutError):
    """No reply came within the request's timeout.

    A request still queued is withdrawn and never sent; one already sent may or may not have
    been done by the server. ``closed``: how the connection ended last while the request
    waited (a request the server answers by closing, such as one over ``--max-message-size``,
    is sent again after each reconnect until it times out); ``refused``: why the last attempt
    to connect failed, when the client was not connected at the end.
    """

    def __init__(self, seconds: float | None, *, closed: CloseInfo | None = None,
                 refused: str | None = None) -> None:
        super().__init__(f"no reply within {seconds} s{_why(closed, refused)}")
        self.seconds = seconds
        self.closed = closed
        self.refused = refused


class ConnectTimeout(ClientError, TimeoutError):
    """``connect()`` saw no connection open within its timeout; ``refused`` says why the last
    attempt failed (for example ``HTTP 503: node is full``), None when none had ended yet."""

    def __init__(self, seconds: float | None, refused: str | None = None) -> None:
        super().__init__(f"no connection within {seconds} s{_why(None, refused)}")
        self.seconds = seconds
        self.refused = refused


class ClientClosed(ClientError):
    """The client was closed (or never started) before the request could be answered."""


class ProtocolViolation(ClientError):
    """The server sent a frame this client cannot understand."""
