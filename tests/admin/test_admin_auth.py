"""Who gets the admin listener's protected paths: bearer token, the page cookie (reads only), or
loopback clients when no token is set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from wsops.admin.auth import COOKIE_NAME, admin_auth, cookie_value

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
    assert morsel.value == cookie_value(TOKEN) != TOKEN  # derived, not the bearer token
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
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
