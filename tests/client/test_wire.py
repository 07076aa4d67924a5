"""Decoding server frames and typed results, without a socket."""

from __future__ import annotations

import json

import pytest

from wsops.client import wire
from wsops.client.errors import ProtocolViolation, ServerError
from wsops.client.events import Message, PresenceEvent, PublishAck, SubscribeResult


def test_message_frame_decodes_to_a_message() -> None:
    text = json.dumps(
        {"op": "message", "room": "r", "offset": 3, "epoch": "e", "data": [1], "ts": 99}
    )
    assert wire.decode(text) == Message("r", 3, "e", [1], 99)
    signed = {"op": "message", "room": "r", "offset": 3, "epoch": "e", "data": 1, "ts": 9,
              "from": "ann"}
    assert wire.decode(json.dumps(signed)) == Message("r", 3, "e", 1, 9, "ann")
    assert wire.decode(json.dumps({**signed, "from": 7})) == Message("r", 3, "e", 1, 9, None)


def test_presence_frames_decode_to_events() -> None:
    assert wire.decode('{"op":"join","room":"r","user":"u"}') == PresenceEvent("join", "r", "u")
    assert wire.decode(b'{"op":"leave","room":"r","user":"u"}') == PresenceEvent("leave", "r", "u")


def test_a_server_side_unsubscribe_decodes_with_its_reason() -> None:
    assert wire.decode('{"op":"unsubscribed","room":"r","reason":"muted"}') == (
        wire.Unsubscribed("r", "muted"))
    assert wire.decode('{"op":"unsubscribed","room":"r"}') == wire.Unsubscribed("r", "")


def test_unknown_ops_are_ignored_for_forward_compatibility() -> None:
    assert wire.decode('{"op":"shiny-new-thing"}') is None


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"op":"message","room":"r","offset":"3","epoch":"e"}',
        '{"op":"reply","id":"x","ok":true}',
        '{"op":"join","room":"r"}',
        '{"op":"unsubscribed","reason":"x"}',
        '{"op":"unsubscribed","room":"r","reason":7}',
    ],
)
def test_malformed_frames_raise_protocol_violation(text: str) -> None:
    with pytest.raises(ProtocolViolation):
        wire.decode(text)


def test_failed_reply_becomes_a_server_error() -> None:
    reply = wire.decode(
        '{"op":"reply","id":4,"ok":false,"error":{"code":"forbidden","message":"no"}}'
    )
    assert isinstance(reply, wire.Reply) and reply.id == 4 and not reply.ok
    err = reply.error()
    assert isinstance(err, ServerError)
    assert (err.code, err.message) == ("forbidden", "no")


def test_typed_results_of_successful_replies() -> None:
    sub = wire.Reply(1, True, {"room": "r", "offset": 5, "epoch": "e", "recovered": False})
    assert wire.subscribe_result("r", sub) == SubscribeResult("r", 5, "e", False)
    fresh = wire.Reply(1, True, {"room": "r", "offset": 0, "epoch": "e"})
    assert wire.subscribe_result("r", fresh).recovered is None
    assert wire.publish_ack("r", wire.Reply(2, True, {"offset": 6, "epoch": "e"})) == PublishAck(
        "r", 6, "e"
    )
    assert wire.presence_users(wire.Reply(3, True, {"users": ["a", "b"]})) == ["a", "b"]
    hist = wire.Reply(4, True, {"messages": [{"offset": 1, "epoch": "e", "data": "x", "ts": 5},
                                             {"offset": 2, "epoch": "e", "data": "y", "ts": 6,
                                              "from": "ann"}]})
    assert wire.history_messages("r", hist) == [Message("r", 1, "e", "x", 5),
                                                Message("r", 2, "e", "y", 6, "ann")]


def test_reply_without_a_position_is_a_violation() -> None:
    with pytest.raises(ProtocolViolation):
        wire.publish_ack("r", wire.Reply(2, True, {"offset": True, "epoch": "e"}))


def test_encode_is_compact_json() -> None:
    assert wire.encode({"op": "publish", "id": 1, "data": "é"}) == (
        '{"op":"publish","id":1,"data":"é"}'
    )


def test_ids_are_bounded_as_the_server_bounds_them() -> None:
    assert wire.MAX_ID == 2**53


def test_a_failed_reply_without_an_error_object_is_an_unknown_server_error() -> None:
    err = wire.Reply(3, False, {}).error()
    assert (err.code, err.message) == ("unknown", "failed reply without an error object")
    err = wire.Reply(3, False, {"error": "text"}).error()
    assert err.code == "unknown"


@pytest.mark.parametrize("users", [None, "ab", [1], ["a", None], {"a": 1}])
def test_a_presence_reply_needs_a_list_of_strings(users: object) -> None:
    with pytest.raises(ProtocolViolation, match="presence reply needs 'users': a list of strings"):
        wire.presence_users(wire.Reply(3, True, {"users": users}))
    assert wire.presence_users(wire.Reply(3, True, {"users": []})) == []


def test_a_history_reply_needs_a_list_of_objects() -> None:
    for raw in (None, "x", {"offset": 1}):
        with pytest.raises(ProtocolViolation, match="history reply needs 'messages': a list"):
            wire.history_messages("r", wire.Reply(4, True, {"messages": raw}))
    with pytest.raises(ProtocolViolation, match="history entries must be objects"):
        wire.history_messages("r", wire.Reply(4, True, {"messages": [5]}))


@pytest.mark.parametrize(("ts", "expected"), [(5, 5), (-2, -2), (True, 0), ("5", 0), (None, 0),
                                              (1.5, 0)])
def test_a_timestamp_that_is_not_an_integer_reads_as_zero(ts: object, expected: int) -> None:
    frame = {"op": "message", "room": "r", "offset": 1, "epoch": "e", "data": 1, "ts": ts}
    decoded = wire.decode(json.dumps(frame))
    assert isinstance(decoded, Message) and decoded.ts == expected
    hist = wire.Reply(1, True, {"messages": [{"offset": 1, "epoch": "e", "ts": ts}]})
    assert wire.history_messages("r", hist)[0].ts == expected


def test_what_json_cannot_hold_is_refused_by_the_encoder() -> None:
    with pytest.raises(ValueError, match=r"^cannot send 'publish': .*\(JSON has no NaN or "
                                         r"infinities\)$"):
        wire.encode({"op": "publish", "data": float("nan")})
