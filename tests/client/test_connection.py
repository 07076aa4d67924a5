"""Why an upgrade was refused, as the client reports it (``connection.refusal_reason``)."""

from __future__ import annotations

from wsops.client.connection import refusal_reason


def test_the_servers_error_description_is_the_reason() -> None:
    challenge = 'Bearer realm="wsops", error="invalid_token", error_description="token expired"'
    assert refusal_reason(401, challenge) == "token expired"


def test_quoted_characters_are_unescaped() -> None:
    challenge = r'Bearer error_description="a \"quoted\" word and a \\ backslash"'
    assert refusal_reason(401, challenge) == 'a "quoted" word and a \\ backslash'


def test_without_a_description_the_status_is_named() -> None:
    assert refusal_reason(401, 'Bearer realm="x"') == "Unauthorized"
    assert refusal_reason(403, None) == "Forbidden"
    assert refusal_reason(499, None) == ""


def test_without_a_description_the_first_line_of_the_body_is_the_reason() -> None:
    assert refusal_reason(503, None, "node is full\n") == "node is full"
    assert refusal_reason(403, 'Bearer realm="x"', "origin not allowed\nmore") == \
        "origin not allowed"
    assert refusal_reason(401, 'Bearer error_description="token expired"', "body") == \
        "token expired"
    assert refusal_reason(503, None, "  \n") == "Service Unavailable"
