"""``wsops publish``, ``wsops rooms``, ``wsops disconnect`` and ``wsops.ApiClient`` against a
live node's server API."""

from __future__ import annotations

import json

import pytest

import wsops
from tests.conftest import Connect, ServerFactory
from tests.server.api.test_api_live import KEY
from tests.support.runcli import cli, flat
from tests.support.tokens import SECRET, hs


async def test_the_commands_publish_list_and_disconnect(
        monkeypatch: pytest.MonkeyPatch, server_factory: ServerFactory,
        connect: Connect) -> None:
    monkeypatch.setenv("WSOPS_API_KEYS", KEY)
    server = await server_factory(api_port=0, allow_anonymous=False, jwt_secret=SECRET)
    assert server.node.api is not None
    url = server.node.api.url
    alice = await connect(server.url, headers={"Authorization": f"Bearer {hs(sub='alice')}"})
    assert (await alice.call("subscribe", "chat:1"))["ok"]
    env: dict[str, str | None] = {"WSOPS_API_KEY": KEY}
    result = await cli("publish", url, "chat:1", '{"text": "hi"}', env=env)
    assert result.exit_code == 0, result.output
    assert "published to chat:1 at offset 1" in result.stdout
    result = await cli("publish", url, "chat:1", "hello", "--json", env=env)
    assert json.loads(result.stdout)["offset"] == 2
    assert [m["data"] for m in await alice.messages(2)] == [{"text": "hi"}, "hello"]
    result = await cli("rooms", url, "--pattern", "chat:*", env=env)
    assert result.exit_code == 0 and "1  chat:1" in result.stdout
    result = await cli("publish", url, "chat:1", "x", env={"WSOPS_API_KEY": "n" * 32})
    assert result.exit_code == 1 and "refused: 401 forbidden: unknown API key" in flat(
        result.stderr)
    result = await cli("publish", url, "chat:1", "x", env={"WSOPS_API_KEY": None})
    assert result.exit_code == 2 and "--key or WSOPS_API_KEY" in flat(result.stderr)
    result = await cli("disconnect", url, "--user", "alice", "--reason", "bye", env=env)
    assert result.exit_code == 0 and "closed 1 connection(s) on this node" in result.stdout
    assert await alice.wait_closed() == 4002


async def test_the_python_client_signs_and_reports_refusals(
        monkeypatch: pytest.MonkeyPatch, server_factory: ServerFactory) -> None:
    monkeypatch.setenv("WSOPS_API_KEYS", KEY)
    server = await server_factory(api_port=0, api_signatures=True)
    assert server.node.api is not None
    async with wsops.ApiClient(server.node.api.url, KEY, sign=True) as api:
        assert (await api.publish("r", [1, 2]))["offset"] == 1
        assert [r["offset"] for r in await api.broadcast(["r", "s"], 3)] == [2, 1]
        assert (await api.history("r"))["offset"] == 2
        assert await api.presence("r") == [] and await api.presence_stats("r") == 0
        assert (await api.rooms())["rooms"] == []
        assert len(await api.info()) == 1
        assert await api.disconnect(user="nobody") == 0
        replies = await api.batch([("publish", {"room": "r", "data": 4}),
                                   ("history", {"room": "bad room"})])
        assert replies[0]["result"]["offset"] == 3 and "error" in replies[1]
    async with wsops.ApiClient(server.node.api.url, KEY) as unsigned:
        with pytest.raises(wsops.ApiCallError) as refused:
            await unsigned.publish("r", 1)
    assert (refused.value.status, refused.value.code) == (401, "forbidden")
    assert "requires signed requests" in refused.value.message


async def test_revoke_from_the_shell(monkeypatch: pytest.MonkeyPatch,
                                     server_factory: ServerFactory, connect: Connect) -> None:
    monkeypatch.setenv("WSOPS_API_KEYS", KEY)
    server = await server_factory(api_port=0, allow_anonymous=False, jwt_secret=SECRET)
    assert server.node.api is not None
    alice = await connect(server.url, headers={"Authorization": f"Bearer {hs(sub='alice')}"})
    env: dict[str, str | None] = {"WSOPS_API_KEY": KEY}
    result = await cli("revoke", server.node.api.url, "--user", "alice", "--for", "10m", env=env)
    assert result.exit_code == 0, result.output
    assert "user alice refused on every node until" in result.stdout
    assert "closed 1 connection(s) on this node" in result.stdout
    assert await alice.wait_closed() == 1008
    result = await cli("revoke", server.node.api.url, "--user", "a", "--for", "soon", env=env)
    assert result.exit_code == 2 and "not a duration" in flat(result.stderr)
    result = await cli("revoke", server.node.api.url, "--for", "1m", env=env)
    assert result.exit_code == 2 and "one of --user and --jti" in flat(result.stderr)
