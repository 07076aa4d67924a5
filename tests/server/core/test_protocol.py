"""Protocol parsing and frame encoding, without a server."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsops.server.core import protocol
from wsops.server.core.protocol import (
    Close,
    ErrorCode,
    NonFiniteNumber,
    Position,
    ProtocolError,
    compact_dumps,
    frame_payload,
    history_item,
    history_items,
    history_reply,
    message_payload,
    message_payload_parts,
    parse,
    presence_event,
    reply_error,
    reply_ok,
    strict_loads,
    text_frame,
    unsubscribed_event,
    valid_room,
)
from wsops.tracecontext import MAX_TRACESTATE, valid_tracestate


def test_parses_each_op() -> None:
    req = parse('{"op":"subscribe","room":"a:b","id":3,"since":{"offset":5,"epoch":"e1"}}')
    assert (req.op, req.room, req.id, req.since) == ("subscribe", "a:b", 3, Position(5, "e1"))
    assert parse('{"op":"publish","room":"r","id":1,"data":null}').data == b"null"
    # Data is kept re-encoded, compact, never decoded: what the broker stores and relays.
    req = parse('{"op":"publish","room":"r","id":1,"data": {"a" : [1, 2.5, "é"]}}')
    assert req.data == '{"a":[1,2.5,"é"]}'.encode()
    assert parse('{"op":"history","room":"r","id":1,"limit":7}').limit == 7
    assert parse('{"op":"presence","room":"r","id":1}').op == "presence"
    assert parse('{"op":"unsubscribe","room":"r","id":0}').id == 0


@pytest.mark.parametrize(
    ("frame", "code", "req_id"),
    [
        ("{nope", "bad_json", None),
        ("[1,2]", "bad_json", None),
        ('{"op":"publish","room":"r","data":1}', "bad_request", None),
        ('{"op":"publish","room":"r","id":true,"data":1}', "bad_request", None),
        ('{"op":"publish","room":"r","id":-1,"data":1}', "bad_request", None),
        ('{"op":"dance","room":"r","id":4}', "unknown_op", 4),
        ('{"op":"publish","room":"bad room","id":5,"data":1}', "invalid_room", 5),
        ('{"op":"publish","room":"","id":5,"data":1}', "invalid_room", 5),
        ('{"op":"publish","room":"r","id":6}', "bad_request", 6),
        ('{"op":"history","room":"r","id":7,"limit":0}', "bad_request", 7),
        ('{"op":"history","room":"r","id":7,"limit":5000}', "bad_request", 7),
        ('{"op":"subscribe","room":"r","id":8,"since":{"offset":"1","epoch":"e"}}',
         "bad_request", 8),
        ('{"op":"subscribe","room":"r","id":8,"since":5}', "bad_request", 8),
        ("[" * 100_000, "bad_json", None),
        # Non-finite numbers are not JSON: refused, with the request's id when it has one.
        ('{"op":"publish","room":"r","id":9,"data":NaN}', "bad_request", 9),
        ('{"op":"publish","room":"r","id":9,"data":[Infinity]}', "bad_request", 9),
        ('{"op":"publish","room":"r","id":9,"data":{"x":-Infinity}}', "bad_request", 9),
        ('{"op":"publish","room":"r","id":NaN,"data":1}', "bad_request", None),
        ('{"op":"history","room":"r","id":10,"limit":NaN}', "bad_request", 10),
    ],
)
def test_rejects_bad_frames_with_a_code(frame: str, code: str, req_id: int | None) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(frame)
    assert info.value.code == code
    assert info.value.req_id == req_id


def test_room_rules() -> None:
    assert valid_room("chat:lobby/general@eu-1.x_y")
    assert valid_room("a" * 128)
    assert not valid_room("a" * 129)
    assert not valid_room("white space")
    assert not valid_room("emoji-\N{GRINNING FACE}")
    assert not valid_room(5)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_text_frame_header_lengths(size: int) -> None:
    frame = text_frame(b"x" * size)
    assert frame[0] == 0x81
    if size < 126:
        assert frame[1] == size and len(frame) == size + 2
    elif size < 65536:
        assert frame[1] == 126 and struct.unpack("!H", frame[2:4])[0] == size
    else:
        assert frame[1] == 127 and struct.unpack("!Q", frame[2:10])[0] == size


def test_message_payload_is_compact_json() -> None:
    payload = message_payload("r", 3, "e", '{"k":"é"}'.encode(), 12, "00-abc")
    assert payload == ('{"op":"message","room":"r","offset":3,"epoch":"e","data":{"k":"é"},'
                       '"ts":12,"traceparent":"00-abc"}').encode()
    assert message_payload("r", 1, "e", b"[]", 5) == (
        b'{"op":"message","room":"r","offset":1,"epoch":"e","data":[],"ts":5}')
    # The sender goes before ts, JSON-escaped: a history item keeps it (cut up to ts).
    assert message_payload("r", 2, "e", b"1", 5, "00-x", 'al"ice') == (
        b'{"op":"message","room":"r","offset":2,"epoch":"e","data":1,"from":"al\\"ice","ts":5,'
        b'"traceparent":"00-x"}')
    assert message_payload_parts("r", b"1", 5, None, "bob") == (
        b'{"op":"message","room":"r","offset":', b',"data":1,"from":"bob","ts":5}')


def test_history_item_is_cut_from_the_stored_message() -> None:
    payload = message_payload("r", 3, "e", b'{"ts":1,",\"ts\":":2}', 12, '00-,"ts":9')
    assert history_item(payload, "r") == (
        b'{"offset":3,"epoch":"e","data":{"ts":1,",\"ts\":":2},"ts":12}')
    framed = text_frame(message_payload("a/b", 70, "ff", b'"x"' * 0 + b'"' + b"y" * 200 + b'"',
                                        -1))
    assert history_item(frame_payload(framed), "a/b") == (
        b'{"offset":70,"epoch":"ff","data":"' + b"y" * 200 + b'","ts":-1}')


def test_history_reply_is_the_documented_frame() -> None:
    items = [b'{"offset":1,"epoch":"e","data":1,"ts":5}']
    assert history_reply(4, "r", Position(1, "e"), items, False) == (
        b'{"op":"reply","id":4,"ok":true,"room":"r","offset":1,"epoch":"e",'
        b'"messages":[{"offset":1,"epoch":"e","data":1,"ts":5}]}')
    assert history_reply(4, "r", Position(9, "e"), [], True) == (
        b'{"op":"reply","id":4,"ok":true,"room":"r","offset":9,"epoch":"e",'
        b'"messages":[],"truncated":true}')


@given(st.text(min_size=1, max_size=20).filter(lambda r: valid_room(r)) | st.just("r"),
       st.integers(1, 2**53), st.integers(-(2**40), 2**45),
       st.none() | st.text(max_size=40))
def test_history_item_round_trips(room: str, offset: int, ts: int, tp: str | None) -> None:
    for data in (None, "x", [1, {"ts": 2}], {",\"ts\":": "\"}"}, 1.5):
        encoded = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        item = history_item(message_payload(room, offset, "e1", encoded, ts, tp), room)
        assert json.loads(item) == {"offset": offset, "epoch": "e1", "data": data, "ts": ts}


@given(st.text(max_size=300))
def test_parse_never_fails_other_than_protocol_error(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        parse(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(["op", "room", "id", "data", "since", "limit"]),
                       json_values))
def test_parse_of_arbitrary_objects_is_request_or_protocol_error(obj: dict[str, object]) -> None:
    try:
        req = parse(json.dumps(obj))
    except ProtocolError as exc:
        assert exc.code in vars(ErrorCode).values()
    else:
        assert req.op == obj["op"] and req.room == obj["room"]


# -- the wire contract, literally (other clients depend on these values) -------------------


def test_close_codes_are_the_documented_numbers() -> None:
    assert {c.name: int(c) for c in Close} == {
        "NORMAL": 1000, "GOING_AWAY": 1001, "UNSUPPORTED_DATA": 1003, "INVALID_DATA": 1007,
        "POLICY": 1008, "TOO_BIG": 1009, "INTERNAL": 1011, "SERVICE_RESTART": 1012,
        "TRY_AGAIN_LATER": 1013, "SLOW_CONSUMER": 4000, "RESYNC": 4001, "DISCONNECTED": 4002,
    }


def test_error_codes_are_the_documented_strings() -> None:
    codes = {k: v for k, v in vars(ErrorCode).items() if not k.startswith("_")}
    assert codes == {
        "BAD_JSON": "bad_json", "BAD_REQUEST": "bad_request", "UNKNOWN_OP": "unknown_op",
        "INVALID_ROOM": "invalid_room", "FORBIDDEN": "forbidden",
        "NOT_SUBSCRIBED": "not_subscribed", "TOO_MANY_ROOMS": "too_many_rooms",
        "RATE_LIMITED": "rate_limited", "UNAVAILABLE": "unavailable", "INTERNAL": "internal",
    }


def test_replies_and_presence_events_are_the_documented_frames() -> None:
    assert reply_ok(3, room="r", offset=2) == (
        '{"op":"reply","id":3,"ok":true,"room":"r","offset":2}')
    assert reply_error(None, "bad_json", "nope") == (
        '{"op":"reply","id":null,"ok":false,"error":{"code":"bad_json","message":"nope"}}')
    assert reply_error(7, "forbidden", "é") == (
        '{"op":"reply","id":7,"ok":false,"error":{"code":"forbidden","message":"é"}}')
    assert presence_event("join", "r", "alice") == '{"op":"join","room":"r","user":"alice"}'
    assert unsubscribed_event("r", "muted é") == (
        '{"op":"unsubscribed","room":"r","reason":"muted é"}')


def test_a_protocol_error_carries_its_message() -> None:
    exc = ProtocolError("forbidden", "not yours", 4)
    assert (str(exc), exc.code, exc.message, exc.req_id) == ("not yours", "forbidden",
                                                              "not yours", 4)


def _refused(frame: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(frame)
    return info.value


def test_id_bounds() -> None:
    top = 2**53 - 1
    assert parse(f'{{"op":"presence","room":"r","id":{top}}}').id == top
    assert parse('{"op":"presence","room":"r","id":0}').id == 0
    err = _refused(f'{{"op":"presence","room":"r","id":{top + 1}}}')
    assert (err.code, err.message) == ("bad_request", "'id' must be an integer in [0, 2^53)")
    assert _refused('{"op":"presence","room":"r","id":1.0}').code == "bad_request"


def test_unknown_op_names_the_op_cut_to_40_characters() -> None:
    err = _refused('{"op":"' + "x" * 50 + '","room":"r","id":2}')
    assert err.message == "unknown op " + repr("x" * 40)
    assert _refused('{"op":null,"room":"r","id":2}').message == "unknown op 'None'"


def test_traceparent_must_be_a_string_of_at_most_128_characters() -> None:
    ok = parse('{"op":"presence","room":"r","id":1,"traceparent":"' + "a" * 128 + '"}')
    assert ok.traceparent == "a" * 128
    for bad in ('"' + "a" * 129 + '"', "5", "null ", '["x"]', "{}"):
        if bad == "null ":  # null is "no traceparent"
            assert parse('{"op":"presence","room":"r","id":1,"traceparent":null}'
                         ).traceparent is None
            continue
        err = _refused('{"op":"presence","room":"r","id":1,"traceparent":' + bad + "}")
        assert (err.code, err.message, err.req_id) == (
            "bad_request", "'traceparent' must be a short string", 1)


def test_presence_flag_must_be_a_boolean() -> None:
    assert parse('{"op":"subscribe","room":"r","id":1,"presence":true}').presence is True
    assert parse('{"op":"subscribe","room":"r","id":1}').presence is False
    err = _refused('{"op":"subscribe","room":"r","id":1,"presence":1}')
    assert (err.code, err.message) == ("bad_request", "'presence' must be true or false")


def test_since_bounds() -> None:
    assert parse('{"op":"subscribe","room":"r","id":1,"since":{"offset":0,"epoch":""}}'
                 ).since == Position(0, "")
    e64 = "e" * 64
    assert parse('{"op":"subscribe","room":"r","id":1,"since":{"offset":5,"epoch":"' + e64
                 + '"}}').since == Position(5, e64)
    for since in ('{"offset":-1,"epoch":"e"}', '{"offset":1,"epoch":"' + "e" * 65 + '"}',
                  '{"offset":1}', '{"offset":true,"epoch":"e"}', '{"offset":1,"epoch":5}'):
        err = _refused('{"op":"subscribe","room":"r","id":1,"since":' + since + "}")
        assert (err.code, err.message) == (
            "bad_request", "'since' needs 'offset' (integer >= 0) and 'epoch' (string)")


def test_history_limit_bounds_and_default() -> None:
    assert parse('{"op":"history","room":"r","id":1}').limit == 100
    assert parse('{"op":"history","room":"r","id":1,"limit":1}').limit == 1
    assert parse('{"op":"history","room":"r","id":1,"limit":1000}').limit == 1000
    for limit in ("0", "1001", "true", "2.0"):
        err = _refused('{"op":"history","room":"r","id":1,"limit":' + limit + "}")
        assert (err.code, err.message) == ("bad_request", "'limit' must be an integer in 1..1000")


def test_data_that_cannot_be_re_encoded_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def too_deep(obj: object) -> str:
        raise RecursionError

    monkeypatch.setattr(protocol, "_dumps", too_deep)
    err = _refused('{"op":"publish","room":"r","id":3,"data":[[1]]}')
    assert (err.code, err.message, err.req_id) == ("bad_request", "'data' is nested too deeply",
                                                   3)


def test_a_refused_non_finite_number_keeps_only_a_valid_id() -> None:
    def req_id(raw_id: str) -> int | None:
        return _refused('{"op":"publish","room":"r","id":' + raw_id + ',"data":NaN}').req_id

    assert req_id("0") == 0
    assert req_id(str(2**53 - 1)) == 2**53 - 1
    assert req_id(str(2**53)) is None
    assert req_id("-1") is None
    assert req_id("true") is None
    assert _refused("[NaN]").req_id is None
    err = _refused('{"op":"publish","room":"r","id":1,"data":NaN}')
    assert err.message == "NaN is not JSON (non-finite numbers are refused)"


@pytest.mark.parametrize("size", [0, 125, 126, 127, 65535, 65536, 70000])
def test_frame_payload_is_what_text_frame_wrapped(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert bytes(frame_payload(text_frame(payload))) == payload


def test_history_item_of_a_message_not_built_here_is_decoded() -> None:
    odd = b'{"offset":4,"op":"message","room":"r","epoch":"e","data":[1],"ts":9,"x":0}'
    assert history_item(odd, "r") == b'{"offset":4,"epoch":"e","data":[1],"ts":9}'
    sent = b'{"offset":4,"op":"message","from":"ann","room":"r","epoch":"e","data":1,"ts":9}'
    assert history_item(sent, "r") == b'{"offset":4,"epoch":"e","data":1,"from":"ann","ts":9}'
    assert history_item(message_payload("a", 1, "e", b"2", 3, None, "ann"), "b") == (
        b'{"offset":1,"epoch":"e","data":2,"from":"ann","ts":3}')
    # Ours, but for another room name: not cut blindly.
    ours = message_payload("a", 1, "e", b"2", 3)
    assert history_item(ours, "b") == b'{"offset":1,"epoch":"e","data":2,"ts":3}'
    # A tail that is not the end of the message is not taken for it.
    tricky = message_payload("r", 1, "e", b'{"k":1,"ts":5}', 6)
    assert history_item(tricky, "r") == b'{"offset":1,"epoch":"e","data":{"k":1,"ts":5},"ts":6}'


def test_history_items_cut_each_stored_message_of_the_room() -> None:
    stored = [message_payload("r", n, "e", b"%d" % n, 10 + n, "00-x") for n in (1, 2)]
    assert history_items(stored, "r") == [
        b'{"offset":1,"epoch":"e","data":1,"ts":11}', b'{"offset":2,"epoch":"e","data":2,"ts":12}']
    sent = [message_payload("r", 3, "e", b"3", 13, "00-x", "ann")]
    assert history_items(sent, "r") == [b'{"offset":3,"epoch":"e","data":3,"from":"ann","ts":13}']
    assert history_items([], "r") == []


def test_whitespace_around_a_frame_is_taken_and_anything_after_it_refused() -> None:
    # The C scanner reads a frame with nothing around it; the rest take the full decoder.
    frame = '{"op":"publish","room":"r","id":1,"data":[1,2]}'
    for text in (frame, f"  {frame}", f"{frame}\n", f"\t{frame} "):
        req = parse(text)
        assert (req.op, req.id, req.data) == ("publish", 1, b"[1,2]"), repr(text)
    for text in (f"{frame} x", f"{frame}{frame}", "  x", ""):
        with pytest.raises(ProtocolError) as err:
            parse(text)
        assert err.value.code == ErrorCode.BAD_JSON, repr(text)
    assert protocol._loads("12") == 12 and protocol._loads(" 12 ") == 12
    assert protocol._loads('"é"') == "é"


def test_compact_dumps_is_json_dumps_with_separators_and_utf8() -> None:
    values: list[object] = [{"a": [1, 2.5, None, True]}, "é\n\"", [], {}, 10**20, -0.0]
    for v in values:
        assert protocol._dumps(v) == json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    with pytest.raises(ValueError, match="Out of range float"):
        protocol._dumps({"x": float("nan")})


@pytest.mark.parametrize(("offer", "chosen"), [
    (None, None),  # a client from before the negotiation: served as v1
    ("", None),
    (" , ", None),
    ("wsops.v1", "wsops.v1"),
    (" wsops.v1 ", "wsops.v1"),
    ("graphql-ws, wsops.v1", "wsops.v1"),
    ("wsops.v2,wsops.v1", "wsops.v1"),
])
def test_the_subprotocol_is_the_newest_version_both_speak(offer: str | None,
                                                          chosen: str | None) -> None:
    assert protocol.negotiate_subprotocol(offer) == chosen
    assert protocol.SUBPROTOCOLS == ("wsops.v1",)


@pytest.mark.parametrize("offer", ["wsops.v2", "wsops.v1x, chat", "WSOPS.V1", "x" * 300])
def test_an_offer_without_a_version_spoken_here_is_refused_naming_both(offer: str) -> None:
    with pytest.raises(protocol.UnsupportedSubprotocol) as refused:
        protocol.negotiate_subprotocol(offer)
    text = str(refused.value)
    assert "this server speaks wsops.v1" in text and "Sec-WebSocket-Protocol" in text
    assert repr(offer[:200]) in text and len(text) < 300


def test_the_json_helpers_the_server_api_and_publisher_use() -> None:
    assert compact_dumps({"a": [1, 2.5, "é"], "b": None}) == '{"a":[1,2.5,"é"],"b":null}'
    with pytest.raises(ValueError):
        compact_dumps(float("nan"))
    assert strict_loads('{"a": [1, "é"]}') == {"a": [1, "é"]}
    with pytest.raises(NonFiniteNumber):
        strict_loads('{"a": NaN}')


TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_publish_carries_a_w3c_tracestate_only_with_its_traceparent() -> None:
    frame = '{"op":"publish","room":"r","id":1,"data":1,"traceparent":"%s","tracestate":%s}'
    ok = parse(frame % (TP, '"rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"'))
    assert (ok.traceparent, ok.tracestate) == (TP, "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE")
    assert parse(frame % (TP, "null")).tracestate is None
    alone = parse('{"op":"publish","room":"r","id":1,"data":1,"tracestate":"k=v"}')
    assert alone.tracestate is None and alone.traceparent is None
    # Not even checked without a traceparent (W3C: it means nothing then).
    assert parse('{"op":"publish","room":"r","id":1,"data":1,"tracestate":5}').tracestate is None
    for bad in ('"K=v"', '"k"', '"k=v,"', "5", '"' + "k=v," * 32 + 'k=v"',
                '"k=' + "v" * 257 + '"', '"a=b=c"'):
        err = _refused(frame % (TP, bad))
        assert (err.code, err.req_id) == ("bad_request", 1)
        assert err.message == ("'tracestate' must be a W3C tracestate: up to 32 key=value "
                               "members, 512 characters at most")


@pytest.mark.parametrize(("value", "valid"), [
    ("k=v", True), ("a-b_c*d/e=1", True), ("t0@sys=x", True), ("k= v", True),
    ("a=1,b=2", True), ("a=1 ,\tb=2", True), (",".join(["k=v"] * 32), True),
    (",".join(["k=v"] * 33), False), ("k=" + "v" * 256, True), ("k=" + "v" * 257, False),
    ("k" * 256 + "=v", True), ("k" * 257 + "=v", False), ("1k=v", False), ("k=v ", False),
    ("k=", False), ("=v", False), ("k=v,", False), ("k=a,b", False), ("k=a=b", False),
    ("K=v", False), ("k=\x7f", False), ("k=é", False), ("", False), (None, False), (5, False),
    ("t" * 241 + "@s=x", True), ("t" * 242 + "@s=x", False), ("t@" + "s" * 14 + "=x", True),
    ("t@" + "s" * 15 + "=x", False), ("t@1=x", False),
    (",".join(["k" * 250 + "=v"] * 3), False),  # over 512 characters
])
def test_valid_tracestate_follows_the_w3c_grammar(value: object, valid: bool) -> None:
    assert valid_tracestate(value) is valid


def test_a_tracestate_may_be_512_characters_and_no_more() -> None:
    at_most = "a=" + "v" * 254 + ",b=" + "v" * 253
    assert len(at_most) == 512 == MAX_TRACESTATE
    assert valid_tracestate(at_most)
    assert not valid_tracestate(at_most + "v")  # each member still valid


def test_the_envelope_carries_the_tracestate_and_history_items_leave_it_out() -> None:
    payload = message_payload("r", 2, "e", b'{"k":1}', 5, TP, "bob", 'k=v,q="x')
    assert payload == (b'{"op":"message","room":"r","offset":2,"epoch":"e","data":{"k":1},'
                       b'"from":"bob","ts":5,"traceparent":"' + TP.encode() +
                       b'","tracestate":"k=v,q=\\"x"}')
    assert protocol.tracestate_in(payload) == 'k=v,q="x'
    assert history_item(payload, "r") == (
        b'{"offset":2,"epoch":"e","data":{"k":1},"from":"bob","ts":5}')
    # Only with a traceparent; a tracestate-looking string in the data is data.
    assert message_payload("r", 2, "e", b"1", 5, None, None, "k=v") == message_payload(
        "r", 2, "e", b"1", 5)
    tricky = message_payload("r", 1, "e", b'",\\"tracestate\\":\\"x\\"}"', 5, TP)
    assert protocol.tracestate_in(tricky) is None
    assert protocol.tracestate_in(message_payload("r", 1, "e", b"1", 5)) is None
    assert protocol.tracestate_in(b'{"x":1,"tracestate":5}') is None


@pytest.mark.parametrize("traceparent", [
    TP, "00-x", 'a"b', "a\\b", "a\x01b", "a\nb", "é\u2028", "\x7f", ""])
def test_the_envelope_traceparent_is_the_json_string_of_what_was_given(traceparent: str) -> None:
    payload = message_payload("r", 1, "e", b"1", 5, traceparent)
    assert payload.endswith(b',"traceparent":' + json.dumps(traceparent, ensure_ascii=False)
                            .encode() + b"}")
    assert json.loads(payload)["traceparent"] == traceparent
