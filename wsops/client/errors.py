"""Exceptions raised by the client, all under ``ClientError`` so one ``except`` catches them."""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the wsops client raises."""


class ServerError(ClientError):
    """The server answered a request with ``ok: false``; the operation had no effect."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AuthError(ClientError):
    """The server refused the handshake with HTTP 401 or 403; retrying will not help."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(f"HTTP {status}{': ' + message if message else ''}")
        self.status = status


class QueueFull(ClientError):
    """The outgoing queue holds ``max_queue`` unsent requests; the request was not queued."""


class RequestTimeout(ClientError, TimeoutError):
    """No reply came within the request's timeout.

    A request still queued is withdrawn and never sent; one already sent may or may not have
    been done by the server.
    """


class ClientClosed(ClientError):
    """The client was closed (or never started) before the request could be answered."""


class ProtocolViolation(ClientError):
    """The server sent a frame this client cannot understand."""
