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
    message_payload,
    parse,
    text_frame,
    valid_room,
)


def test_parses_each_op() -> None:
    req = parse('{"op":"subscribe","room":"a:b","id":3,"since":{"offset":5,"epoch":"e1"}}')
    assert (req.op, req.room, req.id, req.since) == ("subscribe", "a:b", 3, Position(5, "e1"))
    assert parse('{"op":"publish","room":"r","id":1,"data":null}').data is None
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
    payload = message_payload("r", 3, "e", {"k": "é"}, 12, "00-abc")
    assert json.loads(payload) == {
        "op": "message", "room": "r", "offset": 3, "epoch": "e", "data": {"k": "é"}, "ts": 12,
        "traceparent": "00-abc",
    }
    assert b" " not in payload


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
