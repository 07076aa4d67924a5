"""The server API's methods checked without I/O (``wsops.server.api.methods``): what each
takes, and what each refusal says and is answered with."""

from __future__ import annotations

import pytest

from wsops.server.api.methods import (
    MAX_BATCH,
    ApiError,
    Call,
    parse_call,
)

MAX_DATA = 1000


def call(method: str, body: str) -> Call:
    return parse_call(method, body.encode(), MAX_DATA)


def test_each_method_takes_its_parameters() -> None:
    got = call("publish", '{"room":"chat:1","data":{"text":"hé", "n": 1.5},"traceparent":"00-x"}')
    assert (got.room, got.data, got.traceparent) == ("chat:1", '{"text":"hé","n":1.5}'.encode(),
                                                     "00-x")
    got = call("broadcast", '{"rooms":["a","b","a"],"data":[1]}')
    assert got.rooms == ("a", "b") and got.data == b"[1]"  # each room once
    assert call("history", '{"room":"a"}').limit == 100
    assert call("history", '{"room":"a","limit":1000}').limit == 1000
    got = call("rooms", '{"pattern":"chat:*","limit":5}')
    assert (got.pattern, got.limit) == ("chat:*", 5)
    assert got.matches("chat:1") and not got.matches("news:1")
    assert call("rooms", "").matches("anything")  # no body: no parameters
    got = call("disconnect", '{"user":"u1"}')
    assert (got.user, got.connection, got.code, got.reason) == (
        "u1", None, 4002, "disconnected by the server API")
    got = call("disconnect", '{"connection":7,"code":1008,"reason":"bye"}')
    assert (got.connection, got.code, got.reason) == (7, 1008, "bye")
    got = call("unsubscribe", '{"user":"u1","room":"chat:1"}')
    assert (got.user, got.room, got.reason) == ("u1", "chat:1", "unsubscribed by the server API")
    assert call("unsubscribe", '{"user":"u1","room":"a","reason":"muted"}').reason == "muted"
    got = call("revoke", '{"jti":"t-1","seconds":3600}')
    assert (got.user, got.jti, got.seconds) == (None, "t-1", 3600.0)
    assert call("info", "{}").method == "info"
    got = call("batch", '{"calls":[{"method":"publish","params":{"room":"a","data":1}},'
                        '{"method":"presence","params":{"room":"??"}},{"method":"info"}]}')
    first, second, third = got.calls
    assert isinstance(first, Call) and first.room == "a"
    assert isinstance(second, ApiError) and second.code == "invalid_room"  # answered alone
    assert isinstance(third, Call) and third.method == "info"


@pytest.mark.parametrize(("method", "body", "code", "status", "said"), [
    ("nope", "{}", "unknown_op", 404, "unknown method 'nope'"),
    ("publish", "{", "bad_json", 400, "not JSON"),
    ("publish", '{"room":"a","data":NaN}', "bad_request", 400, "NaN is not JSON"),
    ("publish", "[1]", "bad_request", 400, "must be a JSON object"),
    ("publish", '{"room":"a"}', "bad_request", 400, "'data' is required"),
    ("publish", '{"data":1}', "bad_request", 400, "'room' is required"),
    ("publish", '{"room":"a b","data":1}', "invalid_room", 400, "1-128 characters"),
    ("publish", '{"room":"a","data":1,"extra":2}', "bad_request", 400, "unknown: 'extra'"),
    ("publish", '{"room":"a","data":"' + "x" * 1000 + '"}', "bad_request", 400,
     "1002 bytes as JSON; at most 1000"),
    ("publish", '{"room":"a","data":1,"traceparent":7}', "bad_request", 400, "'traceparent'"),
    ("publish", '{"room":"a","data":1,"traceparent":"x","tracestate":"K=v"}', "bad_request",
     400, "'tracestate' must be a W3C tracestate"),
    ("publish", '{"room":"a","data":1,"tracestate":null}', "bad_request", 400, "'tracestate'"),
    ("broadcast", '{"rooms":["a"],"data":1,"tracestate":"' + "k=v," * 200 + 'k=v"}',
     "bad_request", 400, "'tracestate'"),
    ("broadcast", '{"rooms":[],"data":1}', "bad_request", 400, "list of 1-100 rooms"),
    ("broadcast", '{"rooms":' + str(["r"] * 101).replace("'", '"') + ',"data":1}',
     "bad_request", 400, "list of 1-100 rooms"),
    ("history", '{"room":"a","limit":0}', "bad_request", 400, "1..1000"),
    ("history", '{"room":"a","limit":true}', "bad_request", 400, "1..1000"),
    ("rooms", '{"pattern":"a b"}', "bad_request", 400, "a glob"),
    ("rooms", '{"limit":1001}', "bad_request", 400, "1..1000"),
    ("disconnect", "{}", "bad_request", 400, "exactly one of 'user' and 'connection'"),
    ("disconnect", '{"user":"u","connection":1}', "bad_request", 400, "exactly one"),
    ("disconnect", '{"connection":-1}', "bad_request", 400, "connection id"),
    ("disconnect", '{"user":"u","code":1005}', "bad_request", 400, "'code' must be"),
    ("disconnect", '{"user":"u","code":5000}', "bad_request", 400, "1000..4999"),
    ("disconnect", '{"user":"u","reason":"' + "é" * 61 + '"}', "bad_request", 400,
     "120 bytes"),
    ("info", '{"x":1}', "bad_request", 400, "info takes no field"),
    ("unsubscribe", '{"room":"a"}', "bad_request", 400, "'user' is required"),
    ("unsubscribe", '{"user":"u"}', "bad_request", 400, "'room' is required"),
    ("unsubscribe", '{"user":"u","room":"$wsops:control"}', "invalid_room", 400, "1-128"),
    ("unsubscribe", '{"user":"u","room":"a","code":4000}', "bad_request", 400,
     "unknown: 'code'"),
    ("unsubscribe", '{"user":"u","room":"a","reason":"' + "é" * 61 + '"}', "bad_request",
     400, "120 bytes"),
    ("revoke", '{"seconds":1}', "bad_request", 400, "exactly one of 'user' and 'jti'"),
    ("revoke", '{"user":"u"}', "bad_request", 400, "'seconds' (how long)"),
    ("revoke", '{"user":"u","seconds":0}', "bad_request", 400, "'seconds' (how long)"),
    ("revoke", '{"user":"u","seconds":31622401}', "bad_request", 400, "(0, 31622400]"),
    ("batch", '{"calls":[]}', "bad_request", 400, f"list of 1-{MAX_BATCH} calls"),
    ("batch", '{"calls":[{"method":"batch","params":{"calls":[]}}]}', "bad_request", 400,
     "call 0: each call is"),
    ("batch", '{"calls":[{"method":"info"},null]}', "bad_request", 400, "call 1: each call"),
    ("batch", '{"calls":[{"method":"nope"}]}', "bad_request", 400, "call 0: each call"),
    ("batch", '{"calls":[{"method":"info","params":[]}]}', "bad_request", 400, "call 0"),
    ("batch", '{"calls":[{"method":"info","x":1}]}', "bad_request", 400, "call 0"),
])
def test_bad_calls_say_what_is_wrong(method: str, body: str, code: str, status: int,
                                     said: str) -> None:
    with pytest.raises(ApiError) as refused:
        call(method, body)
    assert (refused.value.code, refused.value.status) == (code, status)
    assert said in refused.value.message
    assert refused.value.body() == {"error": {"code": code, "message": refused.value.message}}


def test_a_batch_over_the_limit_is_refused_whole() -> None:
    body = '{"calls":[' + ",".join(['{"method":"info"}'] * (MAX_BATCH + 1)) + "]}"
    with pytest.raises(ApiError, match=f"1-{MAX_BATCH} calls"):
        call("batch", body)
