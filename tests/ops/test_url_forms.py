"""Every command that takes a node's admin URL reads it the same way (``fleetview.normalize_url``):
``http://HOST:PORT``, ``HOST:PORT`` (http) and a trailing slash reach the node; a WebSocket URL
is refused with the same advice everywhere."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from tests.conftest import LiveServer
from tests.support.runcli import cli, flat

FORMS = ("http://127.0.0.1:{port}", "127.0.0.1:{port}", "127.0.0.1:{port}/")


@pytest.mark.parametrize("form", FORMS)
async def test_status_top_drain_and_leaks_reach_the_node_from_every_form(
        server: LiveServer, form: str) -> None:
    url = form.format(port=urlsplit(server.admin_url).port)
    status = await cli("status", url, "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["nodes"][0]["url"] == server.admin_url
    top = await cli("top", url, "--iterations", "1")
    assert top.exit_code == 0 and server.admin_url in top.stdout, top.output
    drain = await cli("drain", url, "--cancel", "--json")
    assert drain.exit_code == 0, drain.output
    assert json.loads(drain.stdout)["node"] == server.admin_url
    leaks = await cli("leaks", url, "--duration", "1", "--interval", "1", "--json")
    assert leaks.exit_code == 0, leaks.output
    assert json.loads(leaks.stdout)["node"] == server.admin_url


@pytest.mark.parametrize("command", [
    ["status"], ["top", "--iterations", "1"], ["drain"], ["leaks"],
    ["loadtest", "idle", "ws://127.0.0.1:1/ws", "--admin"],
])
async def test_a_websocket_url_is_refused_alike(command: list[str]) -> None:
    result = await cli(*command, "ws://127.0.0.1:8765/ws")
    assert result.exit_code == 2, result.output
    assert "'ws://127.0.0.1:8765/ws' is a WebSocket URL: give the node's admin listener" in \
        flat(result.output)


async def test_loadtest_admin_takes_host_port_and_checks_it() -> None:
    bad = await cli("loadtest", "idle", "ws://127.0.0.1:1/ws", "--admin", "127.0.0.1:notaport")
    assert bad.exit_code == 2 and "'127.0.0.1:notaport' has a bad port" in flat(bad.output)
