"""Who may call the server API (``wsops.server.api.keys``): keys compared against every
configured one, rotation, and signed requests with their window and replay guard."""

from __future__ import annotations

import pytest

from wsops.server.api.keys import ApiAuthError, ApiKeys, keys_from_env, sign

A, B = "a" * 20, "b" * 24
T = 1_000_000.0


def test_keys_come_from_the_environment_and_a_short_one_is_refused() -> None:
    assert keys_from_env({"WSOPS_API_KEYS": f" {A}, {B} ,"}) == [A, B]
    assert keys_from_env({}) == []
    with pytest.raises(ValueError, match="key 2 has 5 characters; use at least 16"):
        keys_from_env({"WSOPS_API_KEYS": f"{A},short"})
    with pytest.raises(ValueError, match="at least one key"):
        ApiKeys([])


@pytest.mark.parametrize(("header", "said"), [
    (None, "no API key"), ("", "no API key"), (f"Basic {A}", "Bearer KEY"),
    ("Bearer ", "Bearer KEY"), ("Bearer " + "c" * 20, "unknown API key"),
    (f"Bearer {A}x", "unknown API key"),
])
def test_a_request_without_one_of_the_keys_is_refused(header: str | None, said: str) -> None:
    with pytest.raises(ApiAuthError, match=said):
        ApiKeys([A, B]).check(header, None, None, "POST", "/api/info", b"", T)


def test_every_configured_key_is_accepted_while_rotating() -> None:
    keys = ApiKeys([A, B])
    assert keys.check(f"Bearer {A}", None, None, "POST", "/api/info", b"", T) == A
    assert keys.check(f"bearer {B}", None, None, "POST", "/api/info", b"", T) == B


def signed(key: str, at: float, body: bytes = b'{"room":"r","data":1}',
           path: str = "/api/publish") -> tuple[str, str, str, str, str, bytes]:
    ts = f"{at:.0f}"
    return f"Bearer {key}", ts, sign(key, ts, "POST", path, body), "POST", path, body


def test_signed_requests_within_the_window_pass_once() -> None:
    keys = ApiKeys([A, B], signatures=True, window=300)
    assert keys.check(*signed(B, T - 299), now=T) == B
    with pytest.raises(ApiAuthError, match="already accepted"):
        keys.check(*signed(B, T - 299), now=T + 1)  # the same request again: a replay
    assert keys.check(*signed(B, T - 298), now=T + 1) == B  # another timestamp: another one


@pytest.mark.parametrize(("change", "said"), [
    ({"ts": None}, "requires signed requests"),
    ({"sig": None}, "requires signed requests"),
    ({"ts": "yesterday"}, "Unix seconds"),
    ({"at": T - 301}, r"-301 s from this node's clock"),
    ({"at": T + 301}, r"\+301 s from this node's clock"),
    ({"body": b'{"room":"r","data":2}'}, "bad signature"),  # the body changed after signing
    ({"path": "/api/broadcast"}, "bad signature"),
    ({"key": "c" * 20}, "bad signature"),  # signed with another key than the one sent
])
def test_a_bad_stale_or_tampered_signature_is_refused(change: dict[str, object],
                                                      said: str) -> None:
    keys = ApiKeys([A], signatures=True, window=300)
    auth, ts, sig, method, path, body = signed(str(change.get("key", A)),
                                               float(change.get("at", T)))  # type: ignore[arg-type]
    if "ts" in change:
        ts = change["ts"]  # type: ignore[assignment]
    if "sig" in change:
        sig = change["sig"]  # type: ignore[assignment]
    auth = f"Bearer {A}"
    with pytest.raises(ApiAuthError, match=said):
        keys.check(auth, ts, sig, method, str(change.get("path", path)),
                   change.get("body", body), T)  # type: ignore[arg-type]


def test_remembered_signatures_are_bounded_and_forgotten_after_the_window() -> None:
    keys = ApiKeys([A], signatures=True, window=10, remember=2)
    keys.check(*signed(A, T), now=T)
    keys.check(*signed(A, T + 1), now=T + 1)
    with pytest.raises(ApiAuthError, match="too many signed requests"):
        keys.check(*signed(A, T + 2), now=T + 2)
    keys.check(*signed(A, T + 3), now=T + 10.5)  # the first left the window: room again
    with pytest.raises(ApiAuthError, match="already accepted"):
        keys.check(*signed(A, T + 1), now=T + 10.5)  # still remembered
