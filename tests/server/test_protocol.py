"""Protocol parsing and frame encoding, without a server."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsops.server.protocol import (
    ErrorCode,
    Position,
    ProtocolError,
    frame_payload,
    history_item,
    history_reply,
    message_payload,
    parse,
    text_frame,
    valid_room,
)


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
        ("{nope", ErrorCode.BAD_JSON, None),
        ("[1,2]", ErrorCode.BAD_JSON, None),
        ('{"op":"publish","room":"r","data":1}', ErrorCode.BAD_REQUEST, None),
        ('{"op":"publish","room":"r","id":true,"data":1}', ErrorCode.BAD_REQUEST, None),
        ('{"op":"publish","room":"r","id":-1,"data":1}', ErrorCode.BAD_REQUEST, None),
        ('{"op":"dance","room":"r","id":4}', ErrorCode.UNKNOWN_OP, 4),
        ('{"op":"publish","room":"bad room","id":5,"data":1}', ErrorCode.INVALID_ROOM, 5),
        ('{"op":"publish","room":"","id":5,"data":1}', ErrorCode.INVALID_ROOM, 5),
        ('{"op":"publish","room":"r","id":6}', ErrorCode.BAD_REQUEST, 6),
        ('{"op":"history","room":"r","id":7,"limit":0}', ErrorCode.BAD_REQUEST, 7),
        ('{"op":"history","room":"r","id":7,"limit":5000}', ErrorCode.BAD_REQUEST, 7),
        ('{"op":"subscribe","room":"r","id":8,"since":{"offset":"1","epoch":"e"}}',
         ErrorCode.BAD_REQUEST, 8),
        ('{"op":"subscribe","room":"r","id":8,"since":5}', ErrorCode.BAD_REQUEST, 8),
        ("[" * 100_000, ErrorCode.BAD_JSON, None),
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
