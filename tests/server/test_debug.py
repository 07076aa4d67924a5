"""The debug switch on a live node: one user's publishes traced end to end at a 1% base ratio,
its frames logged both ways, nobody else's; it turns itself off; the admin API refuses what it
cannot do, saying why."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web

import wsops
from tests.conftest import Connect, LiveServer, ServerFactory
from tests.support.otlp import attrs, otlp_receiver
from tests.support.ports import serving
from tests.support.runcli import cli, flat
from tests.support.tokens import SECRET, hs
from tests.support.waits import until
from wsops.admin.contract import DEBUG_MAX_TARGETS
from wsops.instrumentation import INSTRUMENT_KEY
from wsops.instrumentation.leanspans import LeanTracerProvider
from wsops.server.debug import LoggedSink
from wsops.server.tap import server_frames

ROOM = "chat:1"


async def admin(server: LiveServer | str, method: str, path: str,
                body: dict[str, Any] | None = None, status: int = 200) -> Any:
    url = server if isinstance(server, str) else server.admin_url
    async with aiohttp.ClientSession() as s, s.request(method, url + path, json=body) as r:
        text = await r.text()
        assert r.status == status, text
        return json.loads(text) if status == 200 else text


async def _flush(server: LiveServer) -> None:
    # OTEL_EXPORTER_OTLP_ENDPOINT is set: the provider is wsops' own (provider_from_env)
    provider = cast(LeanTracerProvider, server.app[INSTRUMENT_KEY].tracing.provider)
    await asyncio.to_thread(provider.force_flush, 10_000)


async def test_one_users_publishes_are_traced_to_delivery_at_one_percent_and_frames_logged(
    server_factory: ServerFactory, connect: Connect, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with otlp_receiver() as rec:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rec.url)
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.01")
        server = await server_factory(allow_anonymous=False, jwt_secret=SECRET,
                                      rate_limit=1000, rate_burst=1000)
        alice = await connect(f"{server.url}?token={hs(sub='alice')}")
        carol = await connect(f"{server.url}?token={hs(sub='carol')}")
        bob = await connect(f"{server.url}?token={hs(sub='bob')}")
        await bob.call("subscribe", ROOM)
        level = logging.getLogger("wsops.debug").level
        caplog.set_level(logging.DEBUG, logger="wsops.debug")
        logging.getLogger("wsops.debug").setLevel(level)  # the switch turns it up itself

        started = await admin(server, "POST", "/admin/debug", {"user": "alice", "seconds": 60})
        assert started["target"]["id"] == "user:alice" and started["traced"] is True
        assert 59 < started["target"]["seconds_left"] <= 60
        assert [t["id"] for t in (await admin(server, "GET", "/admin/debug"))["targets"]] == [
            "user:alice"]
        for n in range(10):
            assert (await alice.call("publish", ROOM, data={"n": n}))["ok"]
            assert (await carol.call("publish", ROOM, data={"c": n}))["ok"]
        got = await bob.messages(20)

        async def exported() -> bool:
            await _flush(server)
            return len(rec.named(f"publish {'chat:*'}")) >= 10 and len(
                rec.named("deliver chat:*")) >= 10

        await until(exported, 10.0, what="alice's publish and deliver spans exported")
        publishes = {s.span_id.hex(): s for s in rec.named("publish chat:*")}
        by_alice = [m for m in got if "n" in m["data"]]
        # Every message of alice carries its publish span's context, sampled, and that span
        # was exported; a deliver span links to each. Carol's were left to the 1% ratio.
        for m in by_alice:
            _, trace_id, span_id, flags = m["traceparent"].split("-")
            assert int(flags, 16) & 1 and publishes[span_id].trace_id.hex() == trace_id
            [deliver] = [d for d in rec.named("deliver chat:*")
                         if d.links[0].span_id.hex() == span_id]
            assert attrs(deliver.attributes)["wsops.subscribers"] == 1
        carols = [m for m in got if "c" in m["data"]]
        assert sum(1 for m in carols if m.get("traceparent")) <= 3  # P(4+ of 10 at 1%) ~ 2e-6
        assert len(publishes) - 10 <= 3

        lines = [r.getMessage() for r in caplog.records if r.name == "wsops.debug"]
        sent = [ln for ln in lines if "user alice ->" in ln]
        written = [ln for ln in lines if "user alice <-" in ln]
        assert len(sent) == 10 and all('"op":"publish"' in ln.replace(" ", "") for ln in sent)
        assert len(written) == 10 and all('"ok": true' in ln or '"ok":true' in ln
                                          for ln in written)  # alice's acks, as written
        assert not [ln for ln in lines if "carol" in ln or "user bob" in ln]

        stopped = await admin(server, "POST", "/admin/debug/stop", {"id": "user:alice"})
        assert stopped["stopped"] == ["user:alice"] and stopped["targets"] == []
        assert logging.getLogger("wsops.debug").level == level
        assert not any(isinstance(c.transport, LoggedSink) for c in server.node.hub.conns.values())
        before = len(caplog.records)
        assert (await alice.call("publish", ROOM, data={"n": 99}))["ok"]
        assert not [r for r in caplog.records[before:] if r.name == "wsops.debug"]


async def test_the_switch_turns_itself_off_and_watches_connections_opened_meanwhile(
    server_factory: ServerFactory, connect: Connect, caplog: pytest.LogCaptureFixture,
) -> None:
    server = await server_factory(allow_anonymous=False, jwt_secret=SECRET)
    caplog.set_level(logging.DEBUG, logger="wsops.debug")
    await admin(server, "POST", "/admin/debug", {"user": "alice", "seconds": 0.5})
    late = await connect(f"{server.url}?token={hs(sub='alice')}")  # opened after the switch
    conn = server.node.hub.conns[max(server.node.hub.conns)]
    assert isinstance(conn.transport, LoggedSink)
    await late.call("subscribe", ROOM)
    assert any("user alice <-" in r.getMessage() for r in caplog.records)
    await until(lambda: not server.node.debug.targets.active, 5.0, what="the switch off")
    assert (await admin(server, "GET", "/admin/debug"))["targets"] == []
    assert not isinstance(conn.transport, LoggedSink)
    assert any("ran out" in r.getMessage() for r in caplog.records)


async def test_bad_targets_are_refused_saying_why_and_the_number_of_targets_is_bounded(
    server: LiveServer,
) -> None:
    for body, says in (({}, "exactly one of"), ({"user": "a", "room": "r"}, "exactly one of"),
                       ({"user": 5}, "string of 1 to 256"), ({"user": "a", "seconds": 0},
                                                             "'seconds' must be a number"),
                       ({"user": "a", "seconds": 3601}, "'seconds' must be a number")):
        assert says in await admin(server, "POST", "/admin/debug", body, status=400)
    assert "'id' must be a string" in await admin(server, "POST", "/admin/debug/stop",
                                                  {"id": 3}, status=400)
    for i in range(DEBUG_MAX_TARGETS):
        await admin(server, "POST", "/admin/debug", {"room": f"r{i}", "seconds": 60})
    assert "stop one first" in await admin(server, "POST", "/admin/debug",
                                           {"room": "one-more"}, status=409)
    await admin(server, "POST", "/admin/debug", {"room": "r0", "seconds": 30})  # extended: fine
    everything = await admin(server, "POST", "/admin/debug/stop", {})
    assert len(everything["stopped"]) == DEBUG_MAX_TARGETS and everything["targets"] == []
    assert not server.node.debug.targets.active


async def test_a_plain_instrumented_app_has_no_debug_switch() -> None:
    app = web.Application()
    inst = wsops.instrument(app, admin_port=0, runtime=False, tracing=False)
    async with serving(app):
        assert inst.admin is not None
        says = await admin(inst.admin.url, "GET", "/admin/debug", status=404)
        assert "no debug switch" in says


def test_server_frames_reads_every_length_form() -> None:
    from wsops.server.core.protocol import text_frame

    payloads = [b"x" * 5, b"y" * 300, b"z" * 70_000]
    data = b"".join(text_frame(p) for p in payloads) + b"\x81"  # and half a header
    assert [p for _, p in server_frames(data)] == payloads


# -- wsops debug (the CLI) -------------------------------------------------------------------


async def test_wsops_debug_turns_on_lists_and_turns_off_saying_where_to_look(
    server: LiveServer,
) -> None:
    on = await cli("debug", server.admin_url, "--user", "alice", "--for", "2m")
    assert on.exit_code == 0, on.output
    said = flat(on.stdout)
    assert f"{server.admin_url}: watching user:alice until" in said and "(2m00s)" in said
    assert "logger 'wsops.debug'" in said and "not traced" in said  # no OTLP endpoint here
    assert f"wsops debug {server.admin_url} --off --user alice" in said
    await cli("debug", server.admin_url, "--room", "news", "--for", "30s")
    listed = await cli("debug", server.admin_url, "--list", "--json")
    state = json.loads(listed.stdout)
    assert [t["id"] for t in state["targets"]] == ["room:news", "user:alice"]
    assert 100 < state["targets"][1]["seconds_left"] <= 120
    off = await cli("debug", server.admin_url, "--off", "--user", "alice")
    assert "turned off user:alice" in flat(off.stdout) and "room:news" in flat(off.stdout)
    again = await cli("debug", server.admin_url, "--off", "--user", "alice")
    assert "user:alice was not on" in flat(again.stdout)
    everything = await cli("debug", server.admin_url, "--off")
    assert "turned off room:news" in flat(everything.stdout)
    assert "the debug switch is off" in flat(
        (await cli("debug", server.admin_url, "--list")).stdout)


@pytest.mark.parametrize(("args", "says"), [
    ([], "give --user, --room or --connection"),
    (["--user", "a", "--room", "b"], "give one of --user, --room, --connection"),
    (["--list", "--user", "a"], "takes no target"),
    (["--user", "a", "--for", "soon"], "'soon' is not a duration"),
    (["--user", "a", "--for", "2h"], "at most 1h00m"),
    (["--user", "a", "--for", "0s"], "more than 0"),
])
async def test_wsops_debug_refuses_bad_options_with_exit_2(args: list[str], says: str) -> None:
    result = await cli("debug", "127.0.0.1:9", *args)
    assert result.exit_code == 2 and says in flat(result.stderr)


async def test_wsops_debug_says_why_a_node_refused(server: LiveServer) -> None:
    app = web.Application()
    inst = wsops.instrument(app, admin_port=0, runtime=False, tracing=False)
    async with serving(app):
        assert inst.admin is not None
        plain_app = await cli("debug", inst.admin.url, "--user", "a")
    assert plain_app.exit_code == 1 and "no debug switch" in flat(plain_app.stderr)
    long_name = await cli("debug", server.admin_url, "--user", "x" * 300)
    assert long_name.exit_code == 1 and "1 to 256 characters" in flat(long_name.stderr)
    down = await cli("debug", "127.0.0.1:9", "--user", "a")
    assert down.exit_code == 1 and "cannot connect" in flat(down.stderr)
