"""The hand-written OTLP encoding decodes, with the ``opentelemetry-proto`` classes a collector
uses, into exactly the span that was described: every field wsops writes, every value type."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.trace import SpanKind

from tests.support.otlp import attrs
from wsops.instrumentation import otlpwire as wire

TRACE, SPAN, PARENT = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, 0x1122334455667788


def decode(body: bytes) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    return req


def test_varints_match_protobuf_for_small_large_and_negative_numbers() -> None:
    known = {0: b"\x00", 1: b"\x01", 127: b"\x7f", 128: b"\x80\x01", 300: b"\xac\x02",
             16383: b"\xff\x7f", 16384: b"\x80\x80\x01", 2**63 - 1: b"\xff" * 8 + b"\x7f",
             -1: b"\xff" * 9 + b"\x01"}  # int64 -1: ten bytes, as protobuf writes it
    for n, expected in known.items():
        assert wire.varint(n) == wire._varint(n) == expected, n
    # One- and two-byte varints come from the table, the same objects each time.
    assert len(wire.SMALL_VARINTS) == 16384
    assert wire.varint(0) is wire.SMALL_VARINTS[0]
    assert wire.varint(16383) is wire.SMALL_VARINTS[16383]


def test_a_string_attribute_is_the_general_encoding_and_its_key_is_kept() -> None:
    wire._KEYS.clear()
    for key, value in [("messaging.message.id", "3:9"), ("k", ""), ("k", "é" * 70),
                       ("long", "x" * 20_000), ("k" * 300, "v" * 16_000)]:
        assert wire.str_attribute(key, value) == wire.field(wire.ATTRIBUTE,
                                                            wire.key_value(key, value))
        assert wire._KEYS[key] == wire.field(b"\x0a", key.encode())
    for key in ("k", "messaging.message.id"):  # around the one-byte lengths' limit
        for n in range(90, 130):
            assert wire.str_attribute(key, "v" * n) == wire.field(
                wire.ATTRIBUTE, wire.key_value(key, "v" * n)), (key, n)
    wire._KEYS.clear()
    for i in range(wire.MAX_KEYS + 10):
        wire.str_attribute(f"key{i}", "v")
    assert len(wire._KEYS) == wire.MAX_KEYS == 256
    assert wire.str_attribute("key300", "v") == wire.field(wire.ATTRIBUTE,
                                                           wire.key_value("key300", "v"))
    wire._KEYS.clear()


def test_an_unknown_value_type_is_sent_as_its_text() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    assert wire.any_value(Odd()) == wire.any_value("odd") == b"\x0a\x03odd"


def test_a_span_with_every_field_decodes_to_what_was_described() -> None:
    static = wire.static_part("publish chat:*", SpanKind.PRODUCER.value, {
        "s": "chat:42", "yes": True, "no": False, "n": 7, "neg": -3, "f": 0.5, "b": b"\x00\x01",
        "list": ["a", "b"], "skipped": None})
    ids = wire.span_ids(TRACE, SPAN, PARENT, "vendor=1,other=2", parent_remote=True)
    extra = b"".join((
        wire.field(wire.ATTRIBUTE, wire.key_value("messaging.message.id", "3:9")),
        wire.event("exception", 1_700_000_000_500_000_000, {"exception.type": "ValueError"}),
        wire.link(0xAB, 0xCD, 0x01, "k=v"),
        wire.status_error("broker down"),
    ))
    scope = wire.scope("wsops", "1.2.3")
    body = wire.request(wire.resource({"service.name": "svc"}), "https://schema/1", [
        (scope, [wire.span(ids, static, 1_700_000_000_000_000_000, 1_700_000_001_000_000_000,
                           extra)])])
    [rs] = decode(body).resource_spans
    assert attrs(rs.resource.attributes) == {"service.name": "svc"}
    assert rs.schema_url == "https://schema/1"
    [ss] = rs.scope_spans
    assert (ss.scope.name, ss.scope.version) == ("wsops", "1.2.3")
    [s] = ss.spans
    assert s.trace_id == TRACE.to_bytes(16, "big") and s.span_id == SPAN.to_bytes(8, "big")
    assert s.parent_span_id == PARENT.to_bytes(8, "big")
    assert s.trace_state == "vendor=1,other=2"
    assert s.name == "publish chat:*" and s.kind == PbSpan.SPAN_KIND_PRODUCER
    assert (s.start_time_unix_nano, s.end_time_unix_nano) == (1_700_000_000_000_000_000,
                                                              1_700_000_001_000_000_000)
    # sampled, and the parent's remoteness is known and true
    assert s.flags == 0x01 | 0x100 | 0x200
    a = attrs(s.attributes)
    assert a.pop("list").values[1].string_value == "b"
    assert a == {"s": "chat:42", "yes": True, "no": False, "n": 7, "neg": -3, "f": 0.5,
                 "b": b"\x00\x01", "messaging.message.id": "3:9"}
    [ev] = s.events
    assert (ev.name, ev.time_unix_nano) == ("exception", 1_700_000_000_500_000_000)
    assert attrs(ev.attributes) == {"exception.type": "ValueError"}
    [ln] = s.links
    assert ln.trace_id == (0xAB).to_bytes(16, "big") and ln.span_id == (0xCD).to_bytes(8, "big")
    assert (ln.trace_state, ln.flags) == ("k=v", 0x01)
    assert s.status.code == PbStatus.STATUS_CODE_ERROR and s.status.message == "broker down"


def test_a_local_parent_is_flagged_known_and_not_remote() -> None:
    ids = wire.span_ids(TRACE, SPAN, PARENT, "", parent_remote=False)
    body = wire.request(wire.resource({}), "", [
        (wire.scope("wsops", None), [wire.span(ids, wire.static_part("x", 0, {}), 1, 2)])])
    [s] = decode(body).resource_spans[0].scope_spans[0].spans
    assert s.flags == 0x01 | 0x100


def test_a_root_span_has_no_parent_and_says_nothing_of_remoteness() -> None:
    ids = wire.span_ids(TRACE, SPAN, 0, "", parent_remote=None)
    assert ids.endswith(wire.ROOT_FLAGS) and wire.ROOT_FLAGS == wire.FLAGS + b"\x01\x00\x00\x00"
    body = wire.request(wire.resource({}), "", [
        (wire.scope("wsops", None), [wire.span(ids, wire.static_part("x", 0, {}), 1, 2)])])
    [s] = decode(body).resource_spans[0].scope_spans[0].spans
    assert s.parent_span_id == b"" and s.trace_state == "" and s.flags == 0x01
    assert s.kind == PbSpan.SPAN_KIND_INTERNAL and list(s.attributes) == []


def test_spans_are_grouped_under_their_scopes_and_empty_scopes_left_out() -> None:
    ids = wire.span_ids(TRACE, SPAN, 0, "", None)
    one = wire.span(ids, wire.static_part("a", SpanKind.SERVER.value, {}), 1, 2)
    two = wire.span(ids, wire.static_part("b", SpanKind.CONSUMER.value, {}), 1, 2)
    body = wire.request(wire.resource({"k": 1}), "", [
        (wire.scope("first", "1"), [one, two]), (wire.scope("empty", None), []),
        (wire.scope("second", None), [two])])
    [rs] = decode(body).resource_spans
    assert [(ss.scope.name, [s.name for s in ss.spans]) for ss in rs.scope_spans] == [
        ("first", ["a", "b"]), ("second", ["b"])]
    assert rs.scope_spans[0].spans[0].kind == PbSpan.SPAN_KIND_SERVER
    assert rs.scope_spans[0].spans[1].kind == PbSpan.SPAN_KIND_CONSUMER


def test_spans_around_the_two_byte_length_limit_decode() -> None:
    ids = wire.span_ids(TRACE, SPAN, 0, "", None)

    def encoded(n: int, name: str = "big") -> bytes:
        return wire.span(ids, wire.static_part(name, 0, {"payload": "x" * n}), 1, 2)

    for target in (16383, 16384):  # the largest two-byte length, the smallest three-byte one
        n = next(n for n in range(16_200, 16_400)
                 for e in [encoded(n)] if len(e) - 1 - len(wire.varint(target)) == target)
        span = encoded(n)
        assert span[1:].startswith(wire.varint(target))
        body = wire.request(wire.resource({}), "", [(wire.scope("s", None), [span])])
        [s] = decode(body).resource_spans[0].scope_spans[0].spans
        assert attrs(s.attributes)["payload"] == "x" * n


def test_message_spans_from_byte_ids_decode_with_parent_state_and_links() -> None:
    """The bundled node's spans (``message_span``): ids as bytes, a remote parent with its
    tracestate or none, a link to a span with or without one."""
    ids = TRACE.to_bytes(16, "big") + SPAN.to_bytes(8, "big")
    other = (0xAB).to_bytes(16, "big") + (0xCD).to_bytes(8, "big")
    static = wire.static_part("publish chat:*", SpanKind.PRODUCER.value, {"n": 1})
    assert wire.parentage(b"", "ignored") == wire.ROOT_FLAGS
    spans = [
        wire.message_span(ids, 10, 20, static, wire.parentage(PARENT.to_bytes(8, "big"), "a=1"),
                          wire.str_attribute("messaging.message.id", "e:7")),
        wire.message_span(ids, 30, 40, static, wire.parentage(PARENT.to_bytes(8, "big"), ""),
                          wire.link_to(other, "b=2")),
        wire.message_span(other, 50, 60, static, wire.ROOT_FLAGS, wire.link_to(ids)),
    ]
    body = wire.request(wire.resource({}), "", [(wire.scope("wsops", None), spans)])
    first, second, third = decode(body).resource_spans[0].scope_spans[0].spans
    for s, (start, end) in zip((first, second, third), ((10, 20), (30, 40), (50, 60)),
                               strict=True):
        assert (s.start_time_unix_nano, s.end_time_unix_nano) == (start, end)
        assert s.name == "publish chat:*" and s.kind == PbSpan.SPAN_KIND_PRODUCER
        assert attrs(s.attributes)["n"] == 1
    assert first.trace_id == TRACE.to_bytes(16, "big") and first.span_id == SPAN.to_bytes(8, "big")
    assert first.parent_span_id == PARENT.to_bytes(8, "big") and first.trace_state == "a=1"
    assert first.flags == 0x01 | 0x100 | 0x200 and not first.links
    assert attrs(first.attributes)["messaging.message.id"] == "e:7"
    assert second.trace_state == "" and second.flags == 0x01 | 0x100 | 0x200
    [ln] = second.links
    assert ln.trace_id == (0xAB).to_bytes(16, "big") and ln.span_id == (0xCD).to_bytes(8, "big")
    assert (ln.trace_state, ln.flags) == ("b=2", 0x01)
    assert third.trace_id == (0xAB).to_bytes(16, "big") and third.parent_span_id == b""
    assert third.flags == 0x01 and third.trace_state == ""
    [ln] = third.links
    assert (ln.trace_id, ln.span_id, ln.trace_state, ln.flags) == (
        TRACE.to_bytes(16, "big"), SPAN.to_bytes(8, "big"), "", 0x01)


def test_a_linked_root_span_is_a_root_message_span_with_its_link() -> None:
    ids = TRACE.to_bytes(16, "big") + SPAN.to_bytes(8, "big")
    other = (0xAB).to_bytes(16, "big") + (0xCD).to_bytes(8, "big")
    static = wire.static_part("deliver chat:*", SpanKind.CONSUMER.value, {"n": 3, "s": "x" * 90})
    for state in ("", "b=2,c=3"):
        fast = wire.linked_root_span(ids, 10, 20, static, other, state)
        slow = wire.message_span(ids, 10, 20, static, wire.ROOT_FLAGS, wire.link_to(other, state))
        assert len(fast) == len(slow)
        body = wire.request(wire.resource({}), "", [(wire.scope("wsops", None), [fast, slow])])
        a, b = decode(body).resource_spans[0].scope_spans[0].spans
        assert a == b and a.links[0].trace_state == state and a.flags == 0x01
        assert (a.links[0].trace_id, a.links[0].span_id) == (other[:16], other[16:])


def test_a_root_publish_and_its_fanout_pack_to_the_bytes_of_the_general_encoding() -> None:
    """``root_publish_and_fanout`` (one packing per shape) against ``message_span`` +
    ``linked_root_span``: the same bytes for short and long statics (span lengths of one and
    two bytes), message ids of every packed length, and extreme times; and they decode."""
    ids = TRACE.to_bytes(16, "big") + SPAN.to_bytes(8, "big")
    fan = (0xAB).to_bytes(16, "big") + (0xCD).to_bytes(8, "big")
    key = wire.field(b"\x0a", b"messaging.message.id")
    for pad in (0, 200):
        pub_static = wire.static_part("publish r", SpanKind.PRODUCER.value, {"p": "x" * pad})
        fan_static = wire.static_part("deliver r", SpanKind.CONSUMER.value, {"n": 4})
        for n in range(1, 124 - len(key)):
            raw = b"e" * (n - 1) + b"7"
            for start, end in ((1, 2), (2**63, 2**64 - 1)):
                fast = wire.root_publish_and_fanout(ids, start, end, pub_static, raw, fan,
                                                    start + 1, end, fan_static)
                slow = wire.message_span(
                    ids, start, end, pub_static, wire.ROOT_FLAGS,
                    wire.str_attribute("messaging.message.id", raw.decode())
                ) + wire.linked_root_span(fan, start + 1, end, fan_static, ids, "")
                assert fast == slow, (pad, n)
        body = wire.request(wire.resource({}), "", [(wire.scope("wsops", None), [fast])])
        pub, out = decode(body).resource_spans[0].scope_spans[0].spans
        assert attrs(pub.attributes)["messaging.message.id"] == raw.decode()
        assert pub.parent_span_id == b"" and (out.trace_id, out.span_id) == (fan[:16], fan[16:])
        assert (out.links[0].trace_id, out.links[0].span_id) == (ids[:16], ids[16:])


def test_the_packings_kept_per_shape_are_bounded_and_long_ids_refused() -> None:
    ids = bytes(24)
    wire._PAIRS.clear()
    for i in range(1029):  # kept until 1,024 shapes, then started over
        static = wire.static_part(f"publish r{i}", SpanKind.PRODUCER.value, {})
        wire.root_publish_and_fanout(ids, 1, 2, static, b"e:1", ids, 1, 2, static)
        assert len(wire._PAIRS) == (i % 1024) + 1
    # The longest message id whose lengths take a byte each packs; one byte more is refused
    # (encode_record gives it the general encoding).
    longest = 124 - len(wire.field(b"\x0a", b"messaging.message.id")) - 1
    wire.root_publish_and_fanout(ids, 1, 2, b"", b"7" * longest, ids, 1, 2, b"")
    with pytest.raises(ValueError, match="general encoding"):
        wire.root_publish_and_fanout(ids, 1, 2, b"", b"7" * (longest + 1), ids, 1, 2, b"")
