"""JWT authentication and room grants: unit cases and refusal before the upgrade."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest

from tests.conftest import Connect, ServerFactory
from tests.support.tokens import PRIVATE_PEM, PUBLIC_PEM, SECRET, claims, hs
from wsops.server.jwt_auth import AuthConfig, Authenticator, AuthError, token_from_request


def b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


AUTH = Authenticator(
    AuthConfig(secret=SECRET, public_key=PUBLIC_PEM, audience=None, issuer=None)
)


def test_valid_hs256_and_rs256_tokens() -> None:
    ident = AUTH.authenticate(hs())
    assert ident.user == "alice" and ident.may_use("chat:x") and ident.may_use("news")
    assert not ident.may_use("newsroom") and not ident.may_use("other")
    rs = jwt.encode(claims(sub="bob"), PRIVATE_PEM, algorithm="RS256")
    assert AUTH.authenticate(rs).user == "bob"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (hs(exp=int(time.time()) - 10), "expired"),
        (hs(nbf=int(time.time()) + 3 * 3600), "not yet valid"),
        (jwt.encode(claims(), "wrong-secret-" + "0123456789abcdef" * 4, algorithm="HS256"),
         "Signature"),
        (b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims()) + ".", "not accepted"),
        (jwt.encode(claims(), SECRET, algorithm="HS512"), "not accepted"),
        (jwt.encode({"sub": "x"}, SECRET, algorithm="HS256"), "exp"),
        (jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"), "sub"),
        (hs(rooms="chat:*"), "list of strings"),
        ("a.b", "malformed"),
        ("x" * 9000, "too large"),
    ],
)
def test_bad_tokens_are_refused(token: str, reason: str) -> None:
    with pytest.raises(AuthError, match=reason):
        AUTH.authenticate(token)


def test_hs_rs_confusion_with_public_key_as_hmac_secret_is_refused() -> None:
    rs_only = Authenticator(AuthConfig(public_key=PUBLIC_PEM))
    forged = _forge_hs_with_public_key()
    with pytest.raises(AuthError, match="not accepted"):
        rs_only.authenticate(forged)


def _forge_hs_with_public_key() -> str:
    import hashlib
    import hmac

    signing_input = b64({"alg": "HS256", "typ": "JWT"}) + "." + b64(claims())
    sig = hmac.new(PUBLIC_PEM.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def test_audience_and_issuer() -> None:
    auth = Authenticator(AuthConfig(secret=SECRET, audience="wsops", issuer="idp"))
    assert auth.authenticate(hs(aud="wsops", iss="idp")).user == "alice"
    for bad in (hs(aud="other", iss="idp"), hs(iss="idp"), hs(aud="wsops", iss="evil")):
        with pytest.raises(AuthError):
            auth.authenticate(bad)


def test_token_sources() -> None:
    assert token_from_request("Bearer abc", None) == "abc"
    assert token_from_request(None, "q") == "q"
    assert token_from_request(None, None) is None
    with pytest.raises(AuthError):
        token_from_request("Basic abc", None)


def test_no_auth_configured_is_a_startup_error() -> None:
    with pytest.raises(ValueError, match="allow-anonymous"):
        Authenticator(AuthConfig())


@pytest.mark.parametrize(("pem", "said"), [
    ("not a key", "not an RSA public key in PEM"),
    (PUBLIC_PEM.replace("A", "B", 40), "not an RSA public key in PEM"),
    (PRIVATE_PEM, "this is a private key"),
])
def test_a_public_key_that_is_not_one_is_a_startup_error(pem: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        Authenticator(AuthConfig(public_key=pem))


async def test_live_server_refuses_bad_tokens_before_upgrade_and_enforces_rooms(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(allow_anonymous=False, jwt_secret=SECRET, jwt_audience="ws")
    for bad in (None, hs(), hs(aud="ws", exp=int(time.time()) - 5),
                b64({"alg": "none"}) + "." + b64(claims(aud="ws")) + "."):
        headers = {"Authorization": f"Bearer {bad}"} if bad else {}
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await connect(server.url, headers=headers)
        assert info.value.status == 401
    assert server.node.handshake_failures["auth"] == 4
    c = await connect(server.url, headers={"Authorization": f"Bearer {hs(aud='ws')}"})
    assert (await c.call("subscribe", "chat:lobby"))["ok"]
    denied = await c.call("publish", "secret", data=1)
    assert denied["error"]["code"] == "forbidden"
    via_query = await connect(server.url + "?token=" + hs(aud="ws"))
    assert (await via_query.call("publish", "news", data=1))["ok"]


async def test_connection_closes_with_1008_when_its_token_expires(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(allow_anonymous=False, jwt_secret=SECRET)
    c = await connect(server.url, headers={"Authorization": f"Bearer {hs(exp=time.time() + 1.2)}"})
    assert (await c.call("subscribe", "news"))["ok"]
    assert await c.wait_closed(timeout=5) == 1008
    await asyncio.sleep(0)


# -- issue #14, finding 8: aud without a configured audience, and clock skew ------------------

NO_AUDIENCE = ("token has an 'aud' claim but this server accepts no audience: it was issued for "
               "another service (set --jwt-audience to accept tokens for this one)")


@pytest.mark.parametrize("aud", ["other-service", ["a", "b"], "", []])
def test_a_token_naming_an_audience_is_refused_when_none_is_configured(aud: Any) -> None:
    with pytest.raises(AuthError) as info:
        AUTH.authenticate(hs(aud=aud))
    assert str(info.value) == NO_AUDIENCE


def test_a_wrong_audience_says_so() -> None:
    auth = Authenticator(AuthConfig(secret=SECRET, audience="wsops"))
    with pytest.raises(AuthError, match=r"^token audience does not match this server's"):
        auth.authenticate(hs(aud="other"))


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_leeway_admits_a_token_from_a_clock_two_seconds_ahead(claim: str) -> None:
    ahead = hs(**{claim: int(time.time()) + 2})
    strict = Authenticator(AuthConfig(secret=SECRET, leeway=0))
    with pytest.raises(AuthError) as info:
        strict.authenticate(ahead)
    assert str(info.value) == f"invalid token: The token is not yet valid ({claim})"
    assert Authenticator(AuthConfig(secret=SECRET, leeway=5)).authenticate(ahead).user == "alice"


def test_leeway_admits_a_just_expired_token_and_moves_its_expiry_as_far() -> None:
    exp = int(time.time()) - 2
    token = hs(exp=exp)
    with pytest.raises(AuthError, match=r"^token expired$"):
        Authenticator(AuthConfig(secret=SECRET, leeway=0)).authenticate(token)
    ident = Authenticator(AuthConfig(secret=SECRET, leeway=5)).authenticate(token)
    assert ident.expires_at == exp + 5  # the connection closes when the server refuses it


async def refusal(url: str, token: str) -> tuple[int, str]:
    """The HTTP answer to an upgrade with ``token``."""
    headers = {"Authorization": f"Bearer {token}", "Connection": "Upgrade",
               "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode()}
    async with aiohttp.ClientSession() as s, s.get(url.replace("ws://", "http://"),
                                                   headers=headers) as r:
        return r.status, await r.text()


async def test_live_server_refuses_a_token_with_an_audience_and_honours_the_leeway(
    server_factory: ServerFactory, connect: Connect
) -> None:
    strict = await server_factory(allow_anonymous=False, jwt_secret=SECRET)
    assert await refusal(strict.url, hs(aud="billing")) == (401, NO_AUDIENCE)
    ahead = hs(iat=int(time.time()) + 2, nbf=int(time.time()) + 2)
    status, text = await refusal(strict.url, ahead)
    assert status == 401 and "not yet valid" in text
    assert strict.node.handshake_failures["auth"] == 2

    skewed = await server_factory(allow_anonymous=False, jwt_secret=SECRET, jwt_leeway=5)
    c = await connect(skewed.url, headers={"Authorization": f"Bearer {ahead}"})
    assert (await c.call("subscribe", "news"))["ok"]
    assert await refusal(skewed.url, hs(aud="billing")) == (401, NO_AUDIENCE)


def test_leeway_settings_are_bounded() -> None:
    from wsops.config import Settings

    assert Settings(jwt_leeway=300).jwt_leeway == 300
    for bad in (-1, 301):
        with pytest.raises(ValueError, match="jwt_leeway"):
            Settings(jwt_leeway=bad)
