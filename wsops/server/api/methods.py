"""The server API's methods and what each takes, checked without I/O.

Each method is ``POST /api/<method>`` with a JSON object; ``parse_call`` turns a body into a
``Call`` (the method and its checked parameters) or raises ``ApiError`` with one of the
protocol's error codes (PROTOCOL.md) and the HTTP status it is answered with.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from wsops.server.core.protocol import (
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT,
    ROOM_RULE,
    Close,
    ErrorCode,
    NonFiniteNumber,
    compact_dumps,
    strict_loads,
    valid_room,
)
from wsops.server.core.revocations import MAX_SECONDS as MAX_REVOKE_SECONDS
from wsops.tracecontext import TRACESTATE_RULE, valid_tracestate

METHODS: Final = ("publish", "broadcast", "presence", "presence_stats", "history", "rooms",
                  "disconnect", "unsubscribe", "revoke", "info", "batch")
MAX_BROADCAST_ROOMS: Final = 100
MAX_BATCH: Final = 100
MAX_ROOMS_LIMIT: Final = 1000
DEFAULT_ROOMS_LIMIT: Final = 100
DISCONNECT_CODE: Final = Close.DISCONNECTED  # 4002 (PROTOCOL.md)
PATTERN_RE: Final = re.compile(r"[A-Za-z0-9_\-.:@/*?\[\]!]{1,128}")
STATUS: Final = {ErrorCode.BAD_JSON: 400, ErrorCode.BAD_REQUEST: 400,
                 ErrorCode.UNKNOWN_OP: 404, ErrorCode.INVALID_ROOM: 400,
                 ErrorCode.RATE_LIMITED: 429,
                 ErrorCode.UNAVAILABLE: 503, ErrorCode.INTERNAL: 500}


class ApiError(Exception):
    """A call that cannot be served: ``code`` (the protocol's) and the HTTP status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 400)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass(frozen=True)
class Call:
    """One checked method call. ``data`` is the message's data as compact JSON (as stored)."""

    method: str
    room: str = ""
    rooms: tuple[str, ...] = ()
    data: bytes = b""
    traceparent: str | None = None
    tracestate: str | None = None  # only with a traceparent
    limit: int = 0
    pattern: str | None = None
    user: str | None = None
    connection: int | None = None
    code: int = DISCONNECT_CODE
    reason: str = ""
    jti: str | None = None
    seconds: float = 0.0  # revoke: for how long
    calls: tuple[Call | ApiError, ...] = field(default=())

    def matches(self, room: str) -> bool:
        return self.pattern is None or fnmatch.fnmatchcase(room, self.pattern)


def _bad(message: str) -> ApiError:
    return ApiError(ErrorCode.BAD_REQUEST, message)


def _room(params: Mapping[str, Any], key: str = "room") -> str:
    room = params.get(key)
    if room is None:
        raise _bad(f"'{key}' is required")
    if not valid_room(room):
        raise ApiError(ErrorCode.INVALID_ROOM, f"'{key}' must be {ROOM_RULE}")
    assert isinstance(room, str)
    return room


def _whole(value: object) -> int | None:
    """An integer as JSON Schema counts one (``3`` or ``3.0``; not ``true``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _int(params: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = _whole(params.get(key, default))
    if value is None or not low <= value <= high:
        raise _bad(f"'{key}' must be an integer in {low}..{high}")
    return value


def _text(params: Mapping[str, Any], key: str, most: int) -> str | None:
    """A string field; None when absent (an explicit null is refused like any non-string)."""
    if key not in params:
        return None
    value = params[key]
    if not isinstance(value, str) or not 0 < len(value) <= most:
        raise _bad(f"'{key}' must be a string of 1-{most} characters")
    return value


def _reason(params: Mapping[str, Any], default: str) -> str:
    """A close or unsubscribe reason: at most 120 bytes in UTF-8 (a close frame's room)."""
    reason = _text(params, "reason", 120) or default
    if len(reason.encode()) > 120:
        raise _bad("'reason' must fit 120 bytes in UTF-8")
    return reason


def _data(params: Mapping[str, Any]) -> bytes:
    if "data" not in params:
        raise _bad("'data' is required (any JSON value)")
    try:
        return compact_dumps(params["data"]).encode()
    except RecursionError:
        raise _bad("'data' is nested too deeply") from None


def _only(params: Mapping[str, Any], method: str, *allowed: str) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise _bad(f"{method} takes {', '.join(repr(a) for a in allowed) or 'no field'}; "
                   f"unknown: {', '.join(repr(u) for u in unknown)}")


def parse_params(method: str, params: object, max_data: int, *, nested: bool = False) -> Call:
    """A method's parameters (a JSON object) as a Call; ApiError saying what is wrong."""
    if method not in METHODS:
        raise ApiError(ErrorCode.UNKNOWN_OP, f"unknown method {method[:40]!r}; methods: "
                                             f"{', '.join(METHODS)}")
    if not isinstance(params, dict):
        raise _bad(f"the parameters of {method} must be a JSON object")
    if method in ("publish", "broadcast"):
        _only(params, method, "room" if method == "publish" else "rooms", "data", "traceparent",
              "tracestate")
        data = _data(params)
        if len(data) > max_data:
            raise _bad(f"'data' is {len(data)} bytes as JSON; at most {max_data}")
        traceparent = _text(params, "traceparent", 128)
        tracestate = params.get("tracestate")
        if "tracestate" in params and not valid_tracestate(tracestate):  # null refused too
            raise _bad(f"'tracestate' must be {TRACESTATE_RULE}")
        if traceparent is None:  # W3C: a tracestate without its traceparent means nothing
            tracestate = None
        if method == "publish":
            return Call(method, room=_room(params), data=data, traceparent=traceparent,
                        tracestate=tracestate)
        rooms = params.get("rooms")
        if not isinstance(rooms, list) or not 1 <= len(rooms) <= MAX_BROADCAST_ROOMS:
            raise _bad(f"'rooms' must be a list of 1-{MAX_BROADCAST_ROOMS} rooms")
        unique = tuple(dict.fromkeys(_room({"room": r}) for r in rooms))
        return Call(method, rooms=unique, data=data, traceparent=traceparent,
                    tracestate=tracestate)
    if method in ("presence", "presence_stats"):
        _only(params, method, "room")
        return Call(method, room=_room(params))
    if method == "history":
        _only(params, method, "room", "limit")
        return Call(method, room=_room(params),
                    limit=_int(params, "limit", DEFAULT_HISTORY_LIMIT, 1, MAX_HISTORY_LIMIT))
    if method == "rooms":
        _only(params, method, "pattern", "limit")
        pattern = params.get("pattern")
        if "pattern" in params and (not isinstance(pattern, str)
                                    or PATTERN_RE.fullmatch(pattern) is None):
            raise _bad("'pattern' must be a glob (* ? [...]) of room characters, 1-128 long")
        return Call(method, pattern=pattern,
                    limit=_int(params, "limit", DEFAULT_ROOMS_LIMIT, 1, MAX_ROOMS_LIMIT))
    if method == "disconnect":
        _only(params, method, "user", "connection", "code", "reason")
        user = _text(params, "user", 256)
        connection = params.get("connection")
        if "connection" in params:
            connection = _whole(connection)
            if connection is None or connection < 0:
                raise _bad("'connection' must be a connection id (an integer >= 0)")
        if (user is None) == (connection is None):
            raise _bad("give exactly one of 'user' and 'connection'")
        code = _int(params, "code", DISCONNECT_CODE, 1000, 4999)
        if code < 3000 and code not in (1000, 1001, 1008, 1011, 1012, 1013):
            raise _bad("'code' must be 1000, 1001, 1008, 1011, 1012, 1013 or 3000-4999")
        return Call(method, user=user, connection=connection, code=code,
                    reason=_reason(params, "disconnected by the server API"))
    if method == "unsubscribe":
        _only(params, method, "user", "room", "reason")
        user = _text(params, "user", 256)
        if user is None:
            raise _bad("'user' is required (whose connections leave the room)")
        return Call(method, user=user, room=_room(params),
                    reason=_reason(params, "unsubscribed by the server API"))
    if method == "revoke":
        _only(params, method, "user", "jti", "seconds")
        user, jti = _text(params, "user", 256), _text(params, "jti", 256)
        if (user is None) == (jti is None):
            raise _bad("give exactly one of 'user' and 'jti'")
        seconds = params.get("seconds")
        if (not isinstance(seconds, int | float) or isinstance(seconds, bool)
                or not 0 < seconds <= MAX_REVOKE_SECONDS):
            raise _bad(f"'seconds' (how long) must be a number in (0, {MAX_REVOKE_SECONDS:.0f}]")
        return Call(method, user=user, jti=jti, seconds=float(seconds))
    if method == "info":
        _only(params, method)
        return Call(method)
    # batch
    if nested:
        raise _bad("a batch cannot hold another batch")
    _only(params, method, "calls")
    calls = params.get("calls")
    if not isinstance(calls, list) or not 1 <= len(calls) <= MAX_BATCH:
        raise _bad(f"'calls' must be a list of 1-{MAX_BATCH} calls")
    checked: list[Call | ApiError] = []
    for i, item in enumerate(calls):
        # The batch's shape is checked whole: a malformed call refuses it all (nothing
        # applied); a call whose parameters are wrong is answered with its error alone.
        if (not isinstance(item, dict) or set(item) - {"method", "params"}
                or item.get("method") not in METHODS or item["method"] == "batch"
                or not isinstance(item.get("params", {}), dict)):
            raise _bad(f"call {i}: each call is {{\"method\": M, \"params\": {{...}}}} with M "
                       f"one of {', '.join(m for m in METHODS if m != 'batch')}")
        try:
            checked.append(parse_params(item["method"], item.get("params", {}), max_data,
                                        nested=True))
        except ApiError as exc:
            checked.append(exc)
    return Call(method, calls=tuple(checked))


def parse_call(method: str, body: bytes, max_data: int) -> Call:
    """``POST /api/<method>``'s body as a Call; ApiError saying what is wrong."""
    try:
        params = strict_loads(body.decode()) if body else {}  # no body: no parameters
    except NonFiniteNumber as exc:
        raise _bad(str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(ErrorCode.BAD_JSON, f"the body is not JSON: {exc}") from None
    return parse_params(method, params, max_data)
