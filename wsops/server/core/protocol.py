"""Wire protocol v1 (see PROTOCOL.md): parse and validate client frames, encode server frames.

Pure: no sockets, no clocks. Frames to clients are built here once and shared by every
subscriber, which is why the server never negotiates permessage-deflate.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Final, TypeGuard

from wsops.tracecontext import TRACESTATE_RULE, valid_tracestate

MAX_ID: Final = 2**53
MAX_HISTORY_LIMIT: Final = 1000
DEFAULT_HISTORY_LIMIT: Final = 100
ROOM_RE: Final = re.compile(r"[A-Za-z0-9_\-.:@/]{1,128}")
ROOM_RULE: Final = "1-128 characters of A-Z a-z 0-9 _ - . : @ /"
OPS: Final = frozenset({"subscribe", "unsubscribe", "publish", "presence", "history"})


def _compact_dumps() -> Callable[[Any], str]:
    """Compact JSON (``separators=(",", ":")``, UTF-8 kept, NaN refused) through the C encoder
    made once: ``JSONEncoder.encode`` builds a new one on every call (~130 bytecodes per
    reply, most of a publish's encoding). No circular-reference check (``markers=None``): what
    is encoded is parsed JSON or the server's own dicts; too deep a nesting raises
    ``RecursionError`` as before."""
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if c_make_encoder is None:  # pragma: no cover (CPython has the C encoder)
        return encoder.encode
    chunks = c_make_encoder(None, encoder.default, encode_basestring, None, ":", ",", False,
                            False, False)
    join = "".join

    def dumps(obj: Any) -> str:
        return join(chunks(obj, 0))

    return dumps


_dumps = _compact_dumps()


class NonFiniteNumber(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity`` in a frame: Python's json takes them, JSON has none
    (a browser's ``JSON.parse`` would refuse the frame we relayed)."""


def _refuse_constant(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not JSON (non-finite numbers are refused)")


_decoder = json.JSONDecoder(parse_constant=_refuse_constant)
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]
_loads_lax = json.JSONDecoder().decode


def _loads(text: str) -> Any:
    """``_decoder.decode(text)``, with the common case (no whitespace around the value) read by
    the C scanner directly; anything else goes the full way, which says what is wrong."""
    try:
        obj, end = _scan(text, 0)
    except StopIteration:
        return _decoder.decode(text)
    if end != len(text):
        return _decoder.decode(text)
    return obj


def strict_loads(text: str) -> Any:
    """JSON as frames are read: ``NonFiniteNumber`` for NaN or Infinity, ValueError else."""
    return _loads(text)


def compact_dumps(obj: Any) -> str:
    """JSON as the server stores a message's data: compact, UTF-8 kept as is."""
    return _dumps(obj)


SUBPROTOCOLS: Final = ("wsops.v1",)
"""The versions of this protocol the server speaks, as WebSocket subprotocols
(``Sec-WebSocket-Protocol``), newest first: the newest one a client also offers is chosen."""


class UnsupportedSubprotocol(ValueError):
    """A client that offered subprotocols, none of them a version this server speaks."""


def negotiate_subprotocol(offer: str | None) -> str | None:
    """The subprotocol to answer an upgrade's ``Sec-WebSocket-Protocol`` offer with: None when
    it offers nothing (a client from before the negotiation: served as v1), else the newest of
    ``SUBPROTOCOLS`` it names; ``UnsupportedSubprotocol``, naming both sides, when it names
    none of them (PROTOCOL.md, "Versions")."""
    if offer is None:
        return None
    offered = [token.strip() for token in offer.split(",") if token.strip()]
    if not offered:
        return None
    for ours in SUBPROTOCOLS:
        if ours in offered:
            return ours
    shown = ", ".join(offered)
    raise UnsupportedSubprotocol(
        f"the client offers {shown[:200]!r} (Sec-WebSocket-Protocol); this server speaks "
        f"{', '.join(SUBPROTOCOLS)}")


class Close(IntEnum):
    """Close codes the server uses, documented in PROTOCOL.md."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    INVALID_DATA = 1007
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    SLOW_CONSUMER = 4000
    RESYNC = 4001
    DISCONNECTED = 4002  # a backend asked, through the server API (wsops.api)


class ErrorCode:
    """Error codes of failed replies, documented in PROTOCOL.md."""

    BAD_JSON: Final = "bad_json"
    BAD_REQUEST: Final = "bad_request"
    UNKNOWN_OP: Final = "unknown_op"
    INVALID_ROOM: Final = "invalid_room"
    FORBIDDEN: Final = "forbidden"
    NOT_SUBSCRIBED: Final = "not_subscribed"
    TOO_MANY_ROOMS: Final = "too_many_rooms"
    RATE_LIMITED: Final = "rate_limited"
    UNAVAILABLE: Final = "unavailable"
    INTERNAL: Final = "internal"


class ProtocolError(Exception):
    """A client frame that cannot be served; becomes a failed reply with ``code``."""

    def __init__(self, code: str, message: str, req_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.req_id = req_id


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client is in a room's history: the last offset it saw, in an epoch."""

    offset: int
    epoch: str


@dataclass(slots=True)
class Request:
    """A validated client frame (read-only by convention: not ``frozen``, whose ``__init__``
    sets each field through ``object.__setattr__``, four times the bytecodes per frame)."""

    op: str
    id: int
    room: str
    data: bytes = b""  # publish: the data re-encoded as compact JSON (never kept decoded)
    since: Position | None = None
    limit: int = DEFAULT_HISTORY_LIMIT
    traceparent: str | None = None
    presence: bool = False
    tracestate: str | None = None  # only with a traceparent


def valid_room(room: object) -> bool:
    """Room names: 1-128 characters of ``A-Z a-z 0-9 _ - . : @ /``."""
    return isinstance(room, str) and ROOM_RE.fullmatch(room) is not None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def parse(text: str) -> Request:
    """Parse one text frame into a Request, or raise ProtocolError saying what is wrong."""
    try:
        obj = _loads(text)
    except NonFiniteNumber as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, str(exc), _lax_id(text)) from None
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, "frame must be a JSON object")
    raw_id = obj.get("id")
    if not _is_int(raw_id) or not 0 <= raw_id < MAX_ID:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'id' must be an integer in [0, 2^53)")
    req_id: int = raw_id
    op = obj.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise ProtocolError(ErrorCode.UNKNOWN_OP, f"unknown op {str(op)[:40]!r}", req_id)
    room = obj.get("room")
    if not valid_room(room):
        raise ProtocolError(
            ErrorCode.INVALID_ROOM,
            f"'room' must be {ROOM_RULE}",
            req_id,
        )
    assert isinstance(room, str)
    traceparent = obj.get("traceparent")
    tracestate = None  # W3C: a tracestate without its traceparent means nothing (not read)
    if traceparent is not None:
        if not isinstance(traceparent, str) or len(traceparent) > 128:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "'traceparent' must be a short string",
                                req_id)
        tracestate = obj.get("tracestate")
        if tracestate is not None and not valid_tracestate(tracestate):
            raise ProtocolError(ErrorCode.BAD_REQUEST,
                                f"'tracestate' must be {TRACESTATE_RULE}", req_id)
    if op == "publish":
        if "data" not in obj:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "publish needs 'data'", req_id)
        try:
            data = _dumps(obj["data"]).encode()
        except RecursionError:
            # Data the parser took but the encoder cannot re-encode (about 950 levels deep,
            # depending on the stack): the client's fault; nothing stored.
            raise ProtocolError(ErrorCode.BAD_REQUEST, "'data' is nested too deeply",
                                req_id) from None
        return Request(op, req_id, room, data=data, traceparent=traceparent,
                       tracestate=tracestate)
    if op == "subscribe":
        since = _parse_since(obj.get("since"), req_id)
        presence = obj.get("presence", False)
        if not isinstance(presence, bool):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "'presence' must be true or false", req_id)
        return Request(op, req_id, room, since=since, traceparent=traceparent, presence=presence)
    if op == "history":
        limit = obj.get("limit", DEFAULT_HISTORY_LIMIT)
        if not _is_int(limit) or not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"'limit' must be an integer in 1..{MAX_HISTORY_LIMIT}",
                req_id,
            )
        return Request(op, req_id, room, limit=limit, traceparent=traceparent)
    return Request(op, req_id, room, traceparent=traceparent)


def _lax_id(text: str) -> int | None:
    """The request id of a frame refused for a non-finite number (best effort)."""
    try:
        value = _loads_lax(text).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if _is_int(value) and 0 <= value < MAX_ID else None


def _parse_since(since: object, req_id: int) -> Position | None:
    if since is None:
        return None
    if not isinstance(since, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'since' must be an object", req_id)
    offset, epoch = since.get("offset"), since.get("epoch")
    if not _is_int(offset) or offset < 0 or not isinstance(epoch, str) or len(epoch) > 64:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            "'since' needs 'offset' (integer >= 0) and 'epoch' (string)",
            req_id,
        )
    return Position(offset, epoch)


def reply_ok(req_id: int, **fields: Any) -> str:
    return _dumps({"op": "reply", "id": req_id, "ok": True, **fields})


def reply_error(req_id: int | None, code: str, message: str) -> str:
    return _dumps(
        {"op": "reply", "id": req_id, "ok": False, "error": {"code": code, "message": message}}
    )


def message_payload(
    room: str, offset: int, epoch: str, data: bytes, ts: int, traceparent: str | None = None,
    sender: str | None = None, tracestate: str | None = None,
) -> bytes:
    """UTF-8 JSON of a room message (``data`` already JSON), built once per publish;
    ``sender`` (the publishing connection's user, attested by the server) goes in ``from``;
    ``tracestate`` only with a ``traceparent``."""
    head, tail = message_payload_parts(room, data, ts, traceparent, sender, tracestate)
    return b'%s%d,"epoch":%s%s' % (head, offset, _dumps(epoch).encode(), tail)


def message_payload_parts(
    room: str, data: bytes, ts: int, traceparent: str | None = None, sender: str | None = None,
    tracestate: str | None = None,
) -> tuple[bytes, bytes]:
    """A room message's JSON around its offset and epoch: ``head + offset + ',"epoch":' +
    JSON(epoch) + tail`` equals ``message_payload``. A broker that assigns the offset elsewhere
    (in a Redis script) joins the parts there: the message is still encoded once."""
    head = _message_head(room)
    # ``from`` before ``ts``: a history item is cut up to ``ts`` (``_TAIL``), so it keeps the
    # sender, and nodes that predate ``from`` cut these messages as before.
    sender_part = b',"from":%s' % _dumps(sender).encode() if sender is not None else b""
    tail = b',"data":%s%s,"ts":%d' % (data, sender_part, ts)
    if traceparent is not None:
        # Nothing to escape in JSON (any W3C traceparent): no control character, quote or
        # backslash (``isprintable`` also turns away characters JSON keeps as they are).
        if traceparent.isprintable() and '"' not in traceparent and "\\" not in traceparent:
            tail += b',"traceparent":"%s"' % traceparent.encode()
        else:
            tail += b',"traceparent":%s' % _dumps(traceparent).encode()
        if tracestate is not None:
            tail += b',"tracestate":%s' % _dumps(tracestate).encode()
    return head, tail + b"}"


# How a message built by ``message_payload`` ends: its ts, then maybe its traceparent and its
# tracestate (JSON strings: a quote inside is escaped, so nothing in the data can match up to
# the end). Nodes older than the tracestate decode messages that have one (``_history_item``).
_TAIL = re.compile(rb',"ts":-?[0-9]+(?=(?:,"traceparent":"(?:[^"\\]|\\.)*"'
                   rb'(?:,"tracestate":"(?:[^"\\]|\\.)*")?)?}\Z)')
_TRACESTATE_TAIL = re.compile(rb',"tracestate":("(?:[^"\\]|\\.)*")}\Z')


def tracestate_in(payload: bytes) -> str | None:
    """The tracestate of a message built by ``message_payload`` (None when it has none)."""
    m = _TRACESTATE_TAIL.search(payload)
    if m is None:
        return None
    value = _loads_lax(m.group(1).decode())
    return value if isinstance(value, str) else None


def _message_head(room: str) -> bytes:
    return b'{"op":"message","room":%s,"offset":' % _dumps(room).encode()


def history_items(payloads: Iterable[bytes | memoryview], room: str) -> list[bytes]:
    """``history_item`` of each stored message of ``room``."""
    head = _message_head(room)
    return [_history_item(p, head) for p in payloads]


def history_item(payload: bytes | memoryview, room: str) -> bytes:
    """A ``history`` reply item, ``{"offset","epoch","data","from","ts"}`` (``from`` when the
    message has one), cut from a stored message's JSON (``message_payload``) without decoding
    its data."""
    return _history_item(payload, _message_head(room))


def _history_item(payload: bytes | memoryview, head: bytes) -> bytes:
    raw = bytes(payload)
    tail = _TAIL.search(raw, len(head)) if raw.startswith(head) else None
    if tail is None:  # not built here: decode this one
        obj = _loads_lax(raw.decode())
        return _dumps({k: obj[k] for k in ("offset", "epoch", "data", "from", "ts")
                       if k in obj or k != "from"}).encode()
    return b'{"offset":%s}' % raw[len(head):tail.end()]


def history_reply(
    req_id: int, room: str, position: Position, items: list[bytes], truncated: bool
) -> bytes:
    """The reply to ``history`` (UTF-8 JSON) from items already encoded by ``history_item``."""
    head = reply_ok(req_id, room=room, offset=position.offset, epoch=position.epoch)
    more = b',"truncated":true' if truncated else b""
    return b'%s,"messages":[%s]%s}' % (head[:-1].encode(), b",".join(items), more)


def frame_payload(frame: bytes) -> memoryview:
    """The payload of a complete unmasked frame built by ``text_frame``."""
    n = frame[1] & 0x7F
    return memoryview(frame)[2 if n < 126 else 4 if n == 126 else 10:]


def presence_event(kind: str, room: str, user: str) -> str:
    return _dumps({"op": kind, "room": room, "user": user})


def unsubscribed_event(room: str, reason: str) -> str:
    """The server took the connection out of ``room`` (the server API's ``unsubscribe``)."""
    return _dumps({"op": "unsubscribed", "room": room, "reason": reason})


_LEN1 = struct.Struct("!BB").pack
_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, uncompressed server-to-client text frame (RFC 6455 5.2)."""
    n = len(payload)
    if n < 126:
        return _LEN1(0x81, n) + payload
    if n < 65536:
        return _LEN2(0x81, 126, n) + payload
    return _LEN3(0x81, 127, n) + payload
