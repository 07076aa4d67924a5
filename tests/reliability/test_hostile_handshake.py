"""Hostile clients before and around the upgrade (issue #8): slowloris, connection floods from
one address, foreign origins, forged or stale JWTs, the admin API without its token, and label
cardinality attacks on /metrics. A bystander keeps publishing and receiving throughout;
figures go to tests/artifacts/hostile-*.json."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry

import wsops
from tests.conftest import Connect, ServerFactory
from tests.reliability.bystander import Bystander
from tests.support.artifacts import record
from tests.support.ports import serving
from tests.support.procs import start_serve
from tests.support.rawws import UPGRADE, slowloris
from tests.support.scrape import scrape
from tests.support.tokens import PRIVATE_PEM, PUBLIC_PEM, SECRET
from tests.support.waits import until


async def test_slowloris_handshakes_are_cut_at_the_handshake_timeout_others_go_on(
    server_factory: ServerFactory, connect: Connect
) -> None:
    timeout = 1.0
    server = await server_factory(handshake_timeout=timeout)
    by = await Bystander.start(server.url)
    idle = await connect(server.url)  # an upgraded connection is not subject to the timeout
    attack = [asyncio.create_task(slowloris(server.port, 0.2)) for _ in range(20)]
    await asyncio.sleep(0.3)  # the attack under way
    late = await connect(server.url)  # new clients are served during the attack
    assert (await late.call("publish", "r", data=1))["ok"]
    results = await asyncio.gather(*attack)
    cut = [t for t, _ in results]
    # Up to 3x the timeout for a loaded machine: a node that does not cut (or cuts only at
    # the 10 s default, or restarts its timer on every byte) lets all 77 bytes through in 15 s.
    assert all(timeout * 0.9 <= t <= 3 * timeout for t in cut), cut
    assert all(sent < len(UPGRADE) for _, sent in results)
    await asyncio.sleep(timeout)  # idle for over twice the timeout since it connected
    assert (await idle.call("publish", "r", data=2))["ok"]
    figures = await by.stop()
    record("hostile-slowloris.json", {**figures, "handshake_timeout_s": timeout,
                                      "slowloris_clients": len(cut),
                                      "cut_after_s_max": round(max(cut), 2),
                                      "cut_after_s_min": round(min(cut), 2)})


@pytest.mark.slow
async def test_slowloris_against_wsops_serve_defaults_is_cut_after_ten_seconds() -> None:
    sp = await asyncio.to_thread(start_serve, "--allow-anonymous")
    try:
        took, sent = await slowloris(sp.port, 1.0)  # one byte per second
        assert 9.5 <= took <= 14.0 and sent < len(UPGRADE), (took, sent)
        record("hostile-slowloris-default.json", {"cut_after_s": round(took, 2), "bytes": sent})
    finally:
        sp.stop()


async def _ws_from(url: str, local: str, **kw: Any) -> tuple[aiohttp.ClientSession, Any]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(local, 0)))
    try:
        return session, await session.ws_connect(url, **kw)
    except BaseException:
        await session.close()
        raise


async def test_connections_over_the_per_ip_limit_get_429_other_addresses_still_connect(
    server_factory: ServerFactory,
) -> None:
    limit = 4
    server = await server_factory(max_connections_per_ip=limit)
    node = server.node
    by = await Bystander.start(server.url)  # one of 127.0.0.1's four
    mine = [await _ws_from(server.url, "127.0.0.1") for _ in range(limit - 1)]
    assert node.per_ip.counts == {"127.0.0.1": limit}
    started = time.perf_counter()
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await _ws_from(server.url, "127.0.0.1")
    refused_ms = (time.perf_counter() - started) * 1000
    assert info.value.status == 429 and info.value.headers is not None
    assert info.value.headers.get("Retry-After") == "5"
    other = [await _ws_from(server.url, "127.0.0.2") for _ in range(limit)]
    assert node.per_ip.counts == {"127.0.0.1": limit, "127.0.0.2": limit}
    # A closed connection frees its slot.
    s, ws = mine.pop()
    await ws.close()
    await s.close()
    await until(lambda: node.per_ip.counts["127.0.0.1"] == limit - 1)
    mine.append(await _ws_from(server.url, "127.0.0.1"))
    m = await scrape(server.admin_url)
    assert m.get("wsops_handshake_failures_total", route="/ws", reason="per_ip") == 1
    assert m.get("wsops_connections_open", route="/ws") == 2 * limit
    for s, ws in mine + other:
        await ws.close()
        await s.close()
    figures = await by.stop()
    await until(lambda: node.per_ip.counts == {})  # nothing kept per address once gone
    record("hostile-per-ip.json", {**figures, "limit": limit, "refused_ms": round(refused_ms, 2),
                                   "other_address_admitted": limit})


async def test_per_ip_limit_is_off_by_default(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory()
    for _ in range(30):
        await connect(server.url)
    assert server.node.per_ip.counts == {} and len(server.node.hub.conns) == 30


async def test_foreign_origins_get_403_the_allowed_one_and_non_browsers_connect(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(allowed_origins=("https://app.example",))
    by = await Bystander.start(server.url)  # no Origin: not a browser, not a CSWSH vector
    foreign = ["https://evil.example", "null", "https://app.example.evil.example",
               "http://app.example", "https://app.example:8443", "https://app.example/",
               "https://evil.example, https://app.example", ""]
    for origin in foreign:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await connect(server.url, headers={"Origin": origin})
        assert info.value.status == 403, origin
    ok = await connect(server.url, origin="https://app.example")
    assert (await ok.call("publish", "r", data=1))["ok"]
    assert server.node.handshake_failures == {"origin": len(foreign)}
    figures = await by.stop()
    record("hostile-origin.json", {**figures, "foreign_refused": len(foreign)})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _token(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    sig = hmac.new(key, signing.encode(), hashlib.sha256).digest() if key else b""
    return signing + "." + _b64(sig)


async def test_forged_stale_or_oversize_jwts_are_refused_at_the_handshake(
    server_factory: ServerFactory, connect: Connect
) -> None:
    now = int(time.time())
    good = {"sub": "alice", "exp": now + 3600, "aud": "ws", "iss": "idp", "rooms": ["*"]}
    hs_server = await server_factory(allow_anonymous=False, jwt_secret=SECRET,
                                     jwt_audience="ws", jwt_issuer="idp")
    rs_server = await server_factory(allow_anonymous=False, jwt_public_key=PUBLIC_PEM,
                                     jwt_audience="ws")

    def hs(**over: Any) -> str:
        return jwt.encode({**good, **over}, SECRET, algorithm="HS256")

    def rs(**over: Any) -> str:
        return jwt.encode({**good, **over}, PRIVATE_PEM, algorithm="RS256")

    by_hs = await Bystander.start(hs_server.url, headers={"Authorization": f"Bearer {hs()}"})
    by_rs = await Bystander.start(rs_server.url, headers={"Authorization": f"Bearer {rs()}"})
    attacks: dict[str, tuple[Any, str]] = {
        "alg none": (hs_server, _token({"alg": "none", "typ": "JWT"}, good, None)),
        "alg None": (hs_server, _token({"alg": "None"}, good, None)),
        "alg none, HS secret as signature": (hs_server, _token({"alg": "none"}, good,
                                                                SECRET.encode())),
        "HS256 with the RS public key as secret": (rs_server, _token(
            {"alg": "HS256", "typ": "JWT"}, good, PUBLIC_PEM.encode())),
        "RS256 on an HS-only server": (hs_server, rs()),
        "HS512": (hs_server, jwt.encode(good, SECRET, algorithm="HS512")),
        "expired": (hs_server, hs(exp=now - 5)),
        "expired RS": (rs_server, rs(exp=now - 5)),
        "not yet valid": (hs_server, hs(nbf=now + 3600)),
        "wrong audience": (hs_server, hs(aud="other")),
        "no audience": (hs_server, jwt.encode({k: v for k, v in good.items() if k != "aud"},
                                              SECRET, algorithm="HS256")),
        "wrong issuer": (hs_server, hs(iss="evil")),
        "wrong secret": (hs_server, jwt.encode(good, SECRET + "x", algorithm="HS256")),
        "tampered claims": (hs_server, _token({"alg": "HS256"}, {**good, "sub": "root"},
                                              b"guess")),
    }
    taken: dict[str, float] = {}
    for name, (server, token) in attacks.items():
        started = time.perf_counter()
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await connect(server.url, headers={"Authorization": f"Bearer {token}"})
        taken[name] = round((time.perf_counter() - started) * 1000, 2)
        assert info.value.status == 401, name
    # Over aiohttp's 8190-byte header limit: refused by the HTTP parser (400), never decoded.
    huge = hs(pad="p" * 9000)
    for headers, url in (({"Authorization": f"Bearer {huge}"}, hs_server.url),
                         ({}, hs_server.url + "?token=" + huge)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await connect(url, headers=headers)
        assert info.value.status == 400
    refused = sum(1 for s, _ in attacks.values() if s is hs_server)
    assert hs_server.node.handshake_failures == {"auth": refused}
    assert rs_server.node.handshake_failures == {"auth": len(attacks) - refused}
    figures = {"hs": await by_hs.stop(), "rs": await by_rs.stop()}
    record("hostile-jwt.json", {**figures, "refused_401_ms": taken, "oversize_400": 2})


async def test_admin_api_without_or_with_a_wrong_token_is_refused_metrics_stay_open(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "admin-token-for-tests"
    monkeypatch.setenv("WSOPS_ADMIN_TOKEN", token)
    server = await server_factory()
    monkeypatch.delenv("WSOPS_ADMIN_TOKEN")
    by = await Bystander.start(server.url)
    admin, public = server.admin_url, f"http://127.0.0.1:{server.port}"
    wrong: tuple[dict[str, str], ...] = (
        {}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {token}"},
        {"Authorization": f"Bearer {token}x"}, {"Authorization": token})
    async with aiohttp.ClientSession() as s:
        for headers in wrong:
            for method, path in (("GET", "/admin/stats"), ("GET", "/admin/connections"),
                                 ("POST", "/admin/drain"), ("GET", "/")):
                async with s.request(method, admin + path, headers=headers) as r:
                    assert r.status == 401, (path, headers)
            # By design (admin/auth.py) health, readiness and metrics need no token.
            async with s.get(admin + "/metrics", headers=headers) as r:
                assert r.status == 200
        assert not server.node.drainer.draining
        ok = {"Authorization": f"Bearer {token}"}
        async with s.get(admin + "/admin/stats", headers=ok) as r:
            assert r.status == 200 and (await r.json())["connections"] == 1
        for path in ("/metrics", "/healthz", "/readyz", "/admin/stats", "/admin/drain"):
            async with s.get(public + path, headers=ok) as r:
                assert r.status == 404, path
    figures = await by.stop()
    record("hostile-admin.json", {**figures, "refused_401": len(wrong) * 4,
                                  "public_port_404": 5})


async def test_metrics_label_values_stay_capped_under_a_cardinality_attack() -> None:
    cap, routes, codes = 16, 40, 40
    app = web.Application()

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    for i in range(routes):
        app.router.add_get(f"/r{i}", echo)
    app.router.add_get("/d/{name}", echo)
    inst = wsops.instrument(app, registry=CollectorRegistry(), admin_port=0, tracing=False,
                            max_label_values=cap)
    async with serving(app) as port:
        base = f"ws://127.0.0.1:{port}"
        assert inst.admin is not None
        opened = 0
        async with aiohttp.ClientSession() as s:
            targets = [f"/r{i}" for i in range(routes)] + [f"/d/x{i}" for i in range(100)]
            for i, path in enumerate(targets):
                ws = await s.ws_connect(base + path)
                opened += 1
                await ws.close(code=3000 + i % codes)  # peer-chosen close codes
            for i in range(100):  # unmatched paths, refused with 404
                with pytest.raises(aiohttp.WSServerHandshakeError):
                    await s.ws_connect(f"{base}/nope/{i}?q={i}")
        await until(lambda: inst.live.total() == 0)
        m = await scrape(inst.admin.url)
    values: dict[str, set[str]] = {"route": set(), "code": set(), "reason": set()}
    for sample in m.samples:
        for label, seen in values.items():
            if label in sample.labels:
                seen.add(sample.labels[label])
    assert len(values["route"]) == cap + 1 and "other" in values["route"]
    assert len(values["code"]) == cap + 1 and "other" in values["code"]
    assert values["reason"] == {"http_404"}  # the 100 refused upgrades, one value
    # Folded, not dropped: every connection is still counted.
    assert m.sum("wsops_connections_opened_total") == opened
    assert m.sum("wsops_connections_closed_total") == opened
    assert m.sum("wsops_handshake_failures_total") == 100
    record("hostile-label-cardinality.json", {
        "cap": cap, "routes_attacked": routes + 2, "codes_attacked": codes,
        "connections": opened, "route_values": len(values["route"]),
        "code_values": len(values["code"]), "series": len(m.samples)})
