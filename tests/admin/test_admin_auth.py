"""Who gets the admin listener's protected paths: bearer token, the page cookie (reads only), or
loopback clients when no token is set."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from wsops.admin.access import (
    COOKIE_MAX_AGE,
    COOKIE_NAME,
    admin_auth,
    cookie_refusal,
    cookie_value,
)

TOKEN = "s3cret token/with;odd=chars"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

MakeClient = Callable[[str | None], Awaitable[TestClient[web.Request, web.Application]]]


async def ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(token: str | None) -> TestClient[web.Request, web.Application]:
        app = web.Application(middlewares=[admin_auth(token)])
        for path in ("/", "/admin/stats", "/admin/ui/fleet.js", "/metrics"):
            app.router.add_get(path, ok)
        app.router.add_post("/admin/drain", ok)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


def cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE_NAME}={value}"}


async def test_without_credentials_the_page_asks_for_the_token_and_the_api_answers_text(
    make_client: MakeClient,
) -> None:
    client = await make_client(TOKEN)
    r = await client.get("/")
    assert r.status == 401 and r.content_type == "text/html"
    body = await r.text()
    assert '<form method="get" action="/">' in body and 'name="token"' in body
    for path in ("/admin/stats", "/admin/ui/fleet.js"):
        r = await client.get(path)
        assert r.status == 401 and r.content_type == "text/plain", path
        assert "Authorization: Bearer" in await r.text()
    assert (await client.get("/metrics")).status == 200


async def test_a_wrong_token_in_the_address_is_refused_without_a_cookie(
    make_client: MakeClient,
) -> None:
    client = await make_client(TOKEN)
    for wrong in ("nope", TOKEN + "x", "", cookie_value(TOKEN)):
        r = await client.get("/", params={"token": wrong}, allow_redirects=False)
        assert r.status == 401, wrong
        assert "refused" in await r.text()
        assert "Set-Cookie" not in r.headers


async def test_the_right_token_sets_a_strict_httponly_cookie_and_leaves_the_address_bar(
    make_client: MakeClient,
) -> None:
    client = await make_client(TOKEN)
    r = await client.get("/", params={"token": TOKEN, "interval": "1"}, allow_redirects=False)
    assert r.status == 303
    assert r.headers["Location"] == "/?interval=1"  # the token is gone, the rest is kept
    assert r.headers["Referrer-Policy"] == "no-referrer"
    morsel = r.cookies[COOKIE_NAME]
    assert cookie_refusal(morsel.value, TOKEN) is None
    assert TOKEN not in morsel.value  # derived, not the bearer token
    issued_at = int(morsel.value.partition(".")[0])
    assert abs(issued_at - time.time()) < 5
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
    assert morsel["max-age"] == str(COOKIE_MAX_AGE) == str(12 * 3600)
    assert not morsel["secure"]  # plain http listener: a Secure cookie would never come back


async def test_the_cookie_opens_reads_only_and_the_bearer_header_is_needed_to_drain(
    make_client: MakeClient,
) -> None:
    client = await make_client(TOKEN)
    good = cookie(cookie_value(TOKEN))
    for path in ("/", "/admin/stats", "/admin/ui/fleet.js"):
        assert (await client.get(path, headers=good)).status == 200, path
    assert (await client.head("/admin/stats", headers=good)).status == 200
    assert (await client.post("/admin/drain", headers=good)).status == 401  # no CSRF
    assert (await client.post("/admin/drain", headers=BEARER)).status == 200
    assert (await client.get("/admin/stats", headers=BEARER)).status == 200
    for forged in (TOKEN, cookie_value(TOKEN + "x"), ""):
        assert (await client.get("/admin/stats", headers=cookie(forged))).status == 401, forged


async def test_without_a_token_loopback_clients_get_everything_as_before(
    make_client: MakeClient,
) -> None:
    client = await make_client(None)
    assert (await client.get("/")).status == 200
    r = await client.get("/", params={"token": "anything"}, allow_redirects=False)
    assert r.status == 200 and "Set-Cookie" not in r.headers
    assert (await client.post("/admin/drain")).status == 200


# -- issue #14, finding 9: the page cookie expires and cannot be stretched --------------------


async def test_an_expired_cookie_is_refused_and_the_page_says_why(
    make_client: MakeClient,
) -> None:
    client = await make_client(TOKEN)
    now = time.time()
    fresh = cookie(cookie_value(TOKEN, now - COOKIE_MAX_AGE + 60))
    assert (await client.get("/admin/stats", headers=fresh)).status == 200
    stale = cookie(cookie_value(TOKEN, now - COOKIE_MAX_AGE - 1))
    r = await client.get("/admin/stats", headers=stale)
    assert r.status == 401
    assert await r.text() == ("admin API needs 'Authorization: Bearer <WSOPS_ADMIN_TOKEN>' (the "
                              "page cookie has expired: open / with the token again)\n")
    page = await client.get("/", headers=stale)
    assert page.status == 401 and "Your session has expired" in await page.text()
    future = cookie(cookie_value(TOKEN, now + 3600))  # a clock rolled forward, then back
    assert (await client.get("/admin/stats", headers=future)).status == 401


async def test_a_tampered_cookie_is_refused(make_client: MakeClient) -> None:
    client = await make_client(TOKEN)
    old = int(time.time()) - COOKIE_MAX_AGE - 10
    _, _, old_mac = cookie_value(TOKEN, old).partition(".")
    at, _, mac = cookie_value(TOKEN).partition(".")
    flipped = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    for forged in (f"{int(time.time())}.{old_mac}",  # an old cookie's MAC with a new date
                   f"{at}.{flipped}", f"{at}.", at, f"{at}.{mac}.x", f"+{at}.{mac}",
                   f"{at}.{cookie_value(TOKEN + 'x', int(at)).partition('.')[2]}",
                   f"\u0661{at[1:]}.{mac}", "9" * 40 + "." + mac):
        r = await client.get("/admin/stats", headers=cookie(forged))
        assert r.status == 401, forged
        assert "expired" not in await r.text(), forged
    assert (await client.get("/admin/stats", headers=cookie(f"{at}.{mac}"))).status == 200


def test_cookie_refusal_reasons() -> None:
    now = 1_800_000_000.0
    assert cookie_refusal(cookie_value(TOKEN, now), TOKEN, now) is None
    assert cookie_refusal(cookie_value(TOKEN, now), TOKEN, now + COOKIE_MAX_AGE) is None
    assert cookie_refusal(cookie_value(TOKEN, now), TOKEN, now + COOKIE_MAX_AGE + 1) == (
        "the page cookie has expired")
    assert cookie_refusal(cookie_value(TOKEN, now), "another token", now) == (
        "no valid page cookie")
