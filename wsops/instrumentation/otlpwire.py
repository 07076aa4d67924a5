"""OTLP trace protobuf, encoded by hand: the bytes of an ``ExportTraceServiceRequest``.

Pure functions, no I/O. A span is encoded once, when it ends, into the bytes of its ``Span``
message (field 2 of ``ScopeSpans``, length prefix included); a request is the concatenation of
those under the resource's and the scope's bytes, which are encoded once per process. The field
numbers are those of ``opentelemetry/proto/trace/v1/trace.proto`` and ``common.proto``; the tests
decode what this writes with the ``opentelemetry-proto`` classes a collector uses.

What a span carries that depends on its room (name, kind, the messaging attributes) is encoded
once per distinct set and cached by the caller (``static_part``): a sampled span then costs two
random ids, two clock reads and one ``bytes.join``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_MESSAGE_ID,
)

_DOUBLE = struct.Struct("<d").pack
_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack

# Span fields (trace.proto), as tag bytes: (field << 3) | wire type.
TRACE_ID, SPAN_ID, TRACE_STATE, PARENT_SPAN_ID = b"\x0a\x10", b"\x12\x08", b"\x1a", b"\x22\x08"
NAME, KIND, START, END, ATTRIBUTE = b"\x2a", b"\x30", b"\x39", b"\x41", b"\x4a"
EVENT, LINK, STATUS, FLAGS = b"\x5a", b"\x6a", b"\x7a", b"\x85\x01"
SPAN_IN_SCOPE = b"\x12"  # ScopeSpans.spans
# Span.flags: bit 8 says whether the parent's remoteness is known, bit 9 that it is remote.
HAS_IS_REMOTE, IS_REMOTE = 0x100, 0x200
STATUS_ERROR = 2  # Status.StatusCode.STATUS_CODE_ERROR


def _varint(n: int) -> bytes:
    """``n`` (>= 0, or a negative int64 as two's complement) as a protobuf varint."""
    if n < 0:
        n += 1 << 64
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


SMALL_VARINTS = [_varint(n) for n in range(1 << 14)]  # one- and two-byte varints, looked up


def varint(n: int) -> bytes:
    """``n`` (>= 0, or a negative int64 as two's complement) as a protobuf varint."""
    return SMALL_VARINTS[n] if 0 <= n < 16384 else _varint(n)


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    return tag + varint(len(payload)) + payload


def any_value(value: Any) -> bytes:
    """An ``AnyValue`` message (str, bool, int, float, bytes, or a sequence of those)."""
    if isinstance(value, str):
        return field(b"\x0a", value.encode("utf-8", "replace"))
    if isinstance(value, bool):  # before int: bool is an int
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, (bytes, bytearray)):
        return field(b"\x3a", bytes(value))
    if isinstance(value, Sequence):
        return field(b"\x2a", b"".join(field(b"\x0a", any_value(v)) for v in value))
    return field(b"\x0a", str(value).encode("utf-8", "replace"))


_KEYS: dict[str, bytes] = {}  # attribute keys' encodings (bounded: keys are mostly constants)
MAX_KEYS = 256


def str_attribute(key: str, value: str) -> bytes:
    """``field(ATTRIBUTE, key_value(key, value))`` for a string value, in fewer steps (the
    message id of every traced publish): the key's encoding is kept."""
    head = _KEYS.get(key)
    if head is None:
        head = field(b"\x0a", key.encode())
        if len(_KEYS) < MAX_KEYS:
            _KEYS[key] = head
    raw = value.encode("utf-8", "replace")
    n = len(raw)
    if n < 124 - len(head):  # every length fits in one byte (a message id): one formatting
        return b"%s%c%s\x12%c\x0a%c%s" % (ATTRIBUTE, len(head) + n + 4, head, n + 2, n, raw)
    any_v = b"\x0a" + varint(n) + raw
    kv = head + b"\x12" + varint(len(any_v)) + any_v
    return ATTRIBUTE + varint(len(kv)) + kv


def key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue`` message (not yet wrapped as a field)."""
    return field(b"\x0a", key.encode()) + field(b"\x12", any_value(value))


def attributes(tag: bytes, attrs: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> bytes:
    """Each attribute as a ``KeyValue`` field with ``tag`` (``None`` values are left out)."""
    items = attrs.items() if isinstance(attrs, Mapping) else attrs
    return b"".join(field(tag, key_value(k, v)) for k, v in items if v is not None)


def static_part(name: str, kind: int, attrs: Mapping[str, Any]) -> bytes:
    """A span's name, kind (``opentelemetry.trace.SpanKind`` value) and attributes: the part
    of a span that spans of the same operation on the same room share."""
    return field(NAME, name.encode("utf-8", "replace")) + KIND + varint(kind + 1) + \
        attributes(ATTRIBUTE, attrs)


def link(trace_id: int, span_id: int, flags: int, trace_state: str = "") -> bytes:
    """A ``Span.Link`` field."""
    body = TRACE_ID + trace_id.to_bytes(16, "big") + SPAN_ID + span_id.to_bytes(8, "big")
    if trace_state:
        body += field(TRACE_STATE, trace_state.encode())
    return field(LINK, body + b"\x35" + _FIXED32(flags & 0xFF))


def event(name: str, at_ns: int, attrs: Mapping[str, Any]) -> bytes:
    """A ``Span.Event`` field."""
    return field(EVENT, b"\x09" + _FIXED64(at_ns) + field(b"\x12", name.encode()) +
                 attributes(b"\x1a", attrs))


def status_error(message: str) -> bytes:
    """A ``Status`` field with code ERROR and ``message``."""
    return field(STATUS, field(b"\x12", message.encode("utf-8", "replace")) +
                 b"\x18" + varint(STATUS_ERROR))


def span(ids: bytes, static: bytes, start_ns: int, end_ns: int, extra: bytes = b"") -> bytes:
    """A whole ``Span`` as a ``ScopeSpans.spans`` field: ``ids`` (trace, span, parent ids and
    trace state, encoded), ``static`` (``static_part``), times, ``extra`` (other fields)."""
    body = b"".join((ids, static, START, _FIXED64(start_ns), END, _FIXED64(end_ns), extra))
    return SPAN_IN_SCOPE + varint(len(body)) + body




ROOT_FLAGS = FLAGS + _FIXED32(0x01)  # sampled; nothing known of a parent (a root span)
REMOTE_PARENT_FLAGS = FLAGS + _FIXED32(0x01 + HAS_IS_REMOTE + IS_REMOTE)


def parentage(parent_id: bytes, trace_state: str) -> bytes:
    """What a span of ``message_span`` says of its remote parent (``parent_id``: its 8-byte
    span id, or empty for a root span): parent id, trace state, flags."""
    if not parent_id:
        return ROOT_FLAGS
    state = field(TRACE_STATE, trace_state.encode()) if trace_state else b""
    return PARENT_SPAN_ID + parent_id + state + REMOTE_PARENT_FLAGS


# Trace id, span id, start and end: "16s" takes the first 16 bytes of the ids (the trace id).
_IDS_AND_TIMES = struct.Struct("<2s16s2s8scQcQ").pack
_IDS_AND_TIMES_SIZE = 46


def message_span(ids: bytes, start_ns: int, end_ns: int, static: bytes, parent: bytes,
                 extra: bytes) -> bytes:
    """``span`` for ids kept as bytes (``ids``: the 16-byte trace id then the 8-byte span id,
    big-endian as W3C and OTLP write them) and ``parent`` from ``parentage``: the publish and
    fan-out spans of the bundled node, encoded in the export thread (fields in another order
    than ``span``'s: protobuf takes any)."""
    size = _IDS_AND_TIMES_SIZE + len(parent) + len(static) + len(extra)
    return b"".join((SPAN_IN_SCOPE, varint(size), _IDS_AND_TIMES(
        TRACE_ID, ids, SPAN_ID, ids[16:], START, start_ns, END, end_ns), parent,
        static, extra))


def link_to(ids: bytes, trace_state: str = "") -> bytes:
    """``link`` to the sampled span ``ids`` names (as in ``message_span``)."""
    body = TRACE_ID + ids[:16] + SPAN_ID + ids[16:]
    if trace_state:
        body += field(TRACE_STATE, trace_state.encode())
    return field(LINK, body + b"\x35" + _FIXED32(0x01))


# A root span linked to a span without trace state: every field but the static part, fixed.
_LINKED_ROOT = struct.Struct("<2s16s2s8scQcQ6s2s2s16s2s8s5s").pack
_LINKED_ROOT_SIZE = 46 + 6 + 35
_LINK_HEAD = LINK + bytes((33,))
_LINK_FLAGS = b"\x35" + _FIXED32(0x01)


def linked_root_span(ids: bytes, start_ns: int, end_ns: int, static: bytes, link_ids: bytes,
                     link_state: str) -> bytes:
    """``message_span(ids, start_ns, end_ns, static, ROOT_FLAGS, link_to(link_ids,
    link_state))`` (a fan-out span), in fewer steps when the link has no trace state."""
    if link_state:
        return message_span(ids, start_ns, end_ns, static, ROOT_FLAGS,
                            link_to(link_ids, link_state))
    return b"".join((SPAN_IN_SCOPE, varint(_LINKED_ROOT_SIZE + len(static)), _LINKED_ROOT(
        TRACE_ID, ids, SPAN_ID, ids[16:], START, start_ns, END, end_ns, ROOT_FLAGS,
        _LINK_HEAD, TRACE_ID, link_ids, SPAN_ID, link_ids[16:], _LINK_FLAGS), static))


_Pair = tuple[Callable[..., bytes], bytes, bytes, bytes]  # a packing, two heads, a middle
_PAIRS: dict[tuple[bytes, bytes, int], _Pair] = {}
MAX_PAIRS = 1024  # shapes of span pairs kept (their statics are bounded per ``Tracing``)
_ROOT_PUBLISH_TAIL = "2s16s2s8scQcQ"  # trace id, span id, start, end
MESSAGE_ID_KEY = field(b"\x0a", MESSAGING_MESSAGE_ID.encode())  # its KeyValue.key
MAX_PACKED_ID = 124 - len(MESSAGE_ID_KEY)  # message ids whose lengths take one byte each


def root_publish_and_fanout(ids: bytes, start_ns: int, end_ns: int, static: bytes,
                            message_id: bytes, fan_ids: bytes, fan_start_ns: int,
                            fan_end_ns: int, fan_static: bytes) -> bytes:
    """``message_span(ids, start_ns, end_ns, static, ROOT_FLAGS, <message id attribute>) +
    linked_root_span(fan_ids, fan_start_ns, fan_end_ns, fan_static, ids, "")``: a root
    publish span whose ``messaging.message.id`` is ``message_id`` and its fan-out on the same
    node (the usual traced publish of the bundled node), in one ``struct`` packing whose
    format is kept per shape (the two statics and the message id's length)."""
    n = len(message_id)
    key = (static, fan_static, n)
    entry = _PAIRS.get(key)
    if entry is None:
        entry = _pair(static, fan_static, n)
    pack, head, middle, fan_head = entry
    return pack(head, TRACE_ID, ids, SPAN_ID, ids[16:], START, start_ns, END, end_ns, middle,
                message_id, fan_head, TRACE_ID, fan_ids, SPAN_ID, fan_ids[16:], START,
                fan_start_ns, END, fan_end_ns, ROOT_FLAGS, _LINK_HEAD, TRACE_ID, ids, SPAN_ID,
                ids[16:], _LINK_FLAGS, fan_static)


def _pair(static: bytes, fan_static: bytes, n: int) -> _Pair:
    if n >= MAX_PACKED_ID:
        raise ValueError("a message id this long takes the general encoding")
    key = MESSAGE_ID_KEY
    value_head = b"%s%c%s\x12%c\x0a%c" % (ATTRIBUTE, len(key) + n + 4, key, n + 2, n)
    middle = ROOT_FLAGS + static + value_head
    head = SPAN_IN_SCOPE + varint(_IDS_AND_TIMES_SIZE + len(middle) + n)
    fan_head = SPAN_IN_SCOPE + varint(_LINKED_ROOT_SIZE + len(fan_static))
    pack = struct.Struct(
        f"<{len(head)}s{_ROOT_PUBLISH_TAIL}{len(middle)}s{n}s{len(fan_head)}s"
        f"2s16s2s8scQcQ6s2s2s16s2s8s5s{len(fan_static)}s").pack
    entry = (pack, head, middle, fan_head)
    if len(_PAIRS) >= MAX_PAIRS:
        _PAIRS.clear()
    _PAIRS[(static, fan_static, n)] = entry
    return entry


def span_ids(trace_id: int, span_id: int, parent_id: int, trace_state: str,
             parent_remote: bool | None) -> bytes:
    """The identity fields of a span: ids, trace state, and whether its parent is remote.
    Every span wsops makes is sampled (it decides before making one)."""
    out = TRACE_ID + trace_id.to_bytes(16, "big") + SPAN_ID + span_id.to_bytes(8, "big")
    if parent_id:
        out += PARENT_SPAN_ID + parent_id.to_bytes(8, "big")
    if trace_state:
        out += field(TRACE_STATE, trace_state.encode())
    if parent_remote is None:
        return out + ROOT_FLAGS
    # The bits are distinct: sums are ORs.
    return out + FLAGS + _FIXED32(0x01 + HAS_IS_REMOTE + (IS_REMOTE if parent_remote else 0))


def resource(attrs: Mapping[str, Any]) -> bytes:
    """A ``ResourceSpans.resource`` field."""
    return field(b"\x0a", attributes(b"\x0a", attrs))


def scope(name: str, version: str | None) -> bytes:
    """A ``ScopeSpans.scope`` field."""
    body = field(b"\x0a", name.encode())
    if version:
        body += field(b"\x12", version.encode())
    return field(b"\x0a", body)


def request(resource_field: bytes, resource_schema: str,
            scopes: Iterable[tuple[bytes, Sequence[bytes]]]) -> bytes:
    """An ``ExportTraceServiceRequest`` of one resource: for each scope, its ``scope`` field
    and its spans (each from ``span``). Joined once: a batch is ~100-200 KB."""
    parts: list[bytes] = [resource_field]
    for scope_field, spans in scopes:
        if spans:
            parts += (b"\x12", varint(len(scope_field) + sum(map(len, spans))), scope_field)
            parts += spans
    if resource_schema:
        parts.append(field(b"\x1a", resource_schema.encode()))
    return b"".join((b"\x0a", varint(sum(map(len, parts))), *parts))
