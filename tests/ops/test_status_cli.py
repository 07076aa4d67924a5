"""``wsops status`` and ``wsops top`` against live ``wsops serve`` nodes, dead and silent URLs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from tests.conftest import Connect
from tests.support.ports import free_port
from tests.support.procs import ServeProcess, start_serve
from tests.support.runcli import cli, flat, plain
from tests.support.scrape import scrape
from tests.support.waits import until
from wsops import __version__


@pytest.fixture(scope="module")
def nodes() -> Iterator[tuple[ServeProcess, ServeProcess]]:
    """Two real nodes, shared by this module's tests."""
    a = start_serve("--allow-anonymous")
    try:
        b = start_serve("--allow-anonymous")
    except BaseException:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


def rows(output: str) -> dict[str, list[list[str]]]:
    """Table rows by node URL (a URL can have several rows: one per ``top`` refresh)."""
    out: dict[str, list[list[str]]] = {}
    for line in plain(output).splitlines():
        if line.startswith("│ http"):
            cells = [c.strip() for c in line.split("│")[1:-1]]
            out.setdefault(cells[0], []).append(cells)
    return out


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_status_shows_a_row_per_node_up_or_down_and_exits_1_when_one_is_down(
    nodes: tuple[ServeProcess, ServeProcess], connect: Connect
) -> None:
    a, b = nodes
    for _ in range(3):
        await connect(a.url)
    for _ in range(5):
        await connect(b.url)
    dead = dead_url()
    result = await cli("status", a.admin_url, b.admin_url, dead)
    assert result.exit_code == 1, result.output
    table = rows(result.stdout)
    assert [r[1:3] for r in table[a.admin_url]] == [["ready", "3"]]
    assert [r[1:3] for r in table[b.admin_url]] == [["ready", "5"]]
    assert [r[1:3] for r in table[dead]] == [["down", "-"]]
    assert table[a.admin_url][0][-1] == __version__
    assert f"down {dead}: cannot connect: connection refused" in flat(result.stdout)
    assert "3 nodes: 2 up, 1 down · 8 connections" in flat(result.stdout)


async def test_status_json_parses_and_its_numbers_match_the_nodes_metrics(
    nodes: tuple[ServeProcess, ServeProcess], connect: Connect
) -> None:
    a, b = nodes
    pub = await connect(a.url)
    sub = await connect(a.url)
    await sub.call("subscribe", "status")
    for i in range(20):
        await pub.call("publish", "status", data=i)
    await connect(b.url)
    dead = dead_url()

    async def rated() -> tuple[Result, dict[str, Any]] | None:
        result = await cli("status", "--json", a.admin_url, b.admin_url, dead)
        data = json.loads(result.stdout)
        [row] = [n for n in data["nodes"] if n["url"] == a.admin_url]
        rates = (row["messages_in_per_second"], row["messages_out_per_second"])
        return (result, data) if all(r is not None and r > 0 for r in rates) else None

    # The node's rate window samples once a second: the publishes show within a few.
    result, data = await until(rated, 15.0, "node a's message rates above 0")
    assert result.exit_code == 1
    assert (data["up"], data["down"], data["connections"]) == (2, 1, 3)
    by_url = {n["url"]: n for n in data["nodes"]}
    assert by_url[dead]["status"] == "down" and "refused" in by_url[dead]["error"]
    for node, expected in ((a, 2), (b, 1)):
        row, metrics = by_url[node.admin_url], await scrape(node.admin_url)
        assert row["status"] == "up" and row["state"] == "ready" and row["error"] is None
        assert row["connections"] == expected == metrics.sum("wsops_connections_open")
        rss = metrics.get("process_resident_memory_bytes")
        assert 0.5 * rss < row["rss_bytes"] < 2 * rss
        # Fewer than 100 connections: not shown (allocator noise would be most of it).
        assert row["memory_per_connection_bytes"] is None
        assert row["stats"]["memory_per_connection_bytes"] < row["rss_bytes"] / expected / 2
        assert row["version"] == __version__ and row["uptime_seconds"] > 0
        assert row["loop_lag_p99_seconds"] is not None
    a_row = by_url[a.admin_url]
    assert a_row["messages_in_per_second"] > 0 and a_row["messages_out_per_second"] > 0
    assert a_row["delivery_p99_seconds"] is not None
    assert a_row["stats"]["hub"]["published"] >= 20  # the raw /admin/stats rides along


async def test_nodes_come_from_wsops_nodes_or_a_file_when_no_url_is_given(
    nodes: tuple[ServeProcess, ServeProcess], tmp_path: Path
) -> None:
    a, b = nodes
    b_bare = b.admin_url.removeprefix("http://")
    env = await cli("status", "--json", env={"WSOPS_NODES": f"{a.admin_url}, {b_bare}"})
    assert env.exit_code == 0, env.output
    assert [n["url"] for n in json.loads(env.stdout)["nodes"]] == [a.admin_url, b.admin_url]

    listing = tmp_path / "nodes.txt"
    listing.write_text(f"# the fleet\n{a.admin_url}/\n\n  {b_bare}  # second node\n")
    by_file = await cli("status", "--json", "--file", str(listing))
    assert by_file.exit_code == 0, by_file.output
    assert [n["url"] for n in json.loads(by_file.stdout)["nodes"]] == [a.admin_url, b.admin_url]

    # Arguments and --file together, duplicates once; WSOPS_NODES is then not read.
    both = await cli("status", "--json", "--file", str(listing), a.admin_url,
                       env={"WSOPS_NODES": dead_url()})
    assert [n["url"] for n in json.loads(both.stdout)["nodes"]] == [a.admin_url, b.admin_url]

    nothing = await cli("status")
    assert nothing.exit_code == 2 and "no nodes" in flat(nothing.output)
    missing = await cli("status", "--file", str(tmp_path / "absent.txt"))
    assert missing.exit_code == 2 and "cannot read" in flat(missing.output)


async def test_silent_nodes_are_asked_in_parallel_and_time_out_as_down() -> None:
    arrived: list[float] = []
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        arrived.append(time.monotonic())  # accepted, never answered
        held.append(writer)

    holes = [await asyncio.start_server(silent, "127.0.0.1", 0) for _ in range(3)]
    urls = [f"http://127.0.0.1:{h.sockets[0].getsockname()[1]}" for h in holes]
    timeout = 1.0
    try:
        started = time.monotonic()
        result = await cli("status", "--json", "--timeout", str(timeout), *urls)
        elapsed = time.monotonic() - started
    finally:
        for w in held:
            w.close()
        for h in holes:
            h.close()
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [n["status"] for n in data["nodes"]] == ["down"] * 3
    assert all(n["error"] == "no answer within 1 s" for n in data["nodes"])
    # In parallel: all three were asked before the first could time out (in a row, they would
    # be a timeout apart and take 3 s); one timeout in all, with room for a loaded machine.
    assert len(arrived) == 3 and max(arrived) - min(arrived) < timeout, arrived
    assert timeout <= elapsed < 2.5 * timeout, elapsed


async def test_the_websocket_port_or_a_ws_url_is_refused_with_a_hint(
    nodes: tuple[ServeProcess, ServeProcess]
) -> None:
    a, _ = nodes
    wrong_port = await cli("status", f"127.0.0.1:{a.port}")
    assert wrong_port.exit_code == 1
    assert [r[1] for r in rows(wrong_port.stdout)[f"http://127.0.0.1:{a.port}"]] == ["error"]
    assert "404 Not Found for /admin/stats: not a wsops admin API" in flat(wrong_port.stdout)
    ws_url = await cli("status", a.url)
    assert ws_url.exit_code == 2 and "is a WebSocket URL" in flat(ws_url.output)


async def test_top_refreshes_sorted_rows_for_every_node(
    nodes: tuple[ServeProcess, ServeProcess], connect: Connect
) -> None:
    a, b = nodes
    for _ in range(2):
        await connect(b.url)
    dead = dead_url()
    started = time.monotonic()
    result = await cli("top", a.admin_url, dead, b.admin_url, "--iterations", "2",
                         "--interval", "0.5")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert plain(result.stdout).count("wsops top · ") == 2
    table = rows(result.stdout)
    assert [r[1] for r in table[a.admin_url]] == ["ready", "ready"]
    assert [r[1] for r in table[b.admin_url]] == ["ready", "ready"]
    assert [r[1] for r in table[dead]] == ["down", "down"]
    # Sorted by connections, highest first; nodes that are down last.
    order = [line.split("│")[1].strip() for line in plain(result.stdout).splitlines()
             if line.startswith("│ http")]
    assert order == [b.admin_url, a.admin_url, dead] * 2
    assert "sorted by connections" in result.stdout
    assert elapsed >= 0.5


async def test_top_and_status_refuse_bad_options() -> None:
    for args in (["top", "x:1", "--interval", "0"], ["top", "x:1", "--sort", "cpu"],
                 ["top", "x:1", "--iterations", "0"], ["status", "x:1", "--timeout", "0"],
                 ["status", "ftp://x"]):
        result = await cli(*args)
        assert result.exit_code == 2, args


async def test_help_explains_options_with_an_example() -> None:
    status = flat((await cli("status", "--help")).output)
    for text in ("Example: wsops status http://", "--file", "--json", "--token",
                 "WSOPS_ADMIN_TOKEN", "WSOPS_NODES", "Exit codes: 0 every node up; 1 any node"):
        assert text in status
    top = flat((await cli("top", "--help")).output)
    for text in ("Example: wsops top http://", "--interval", "--sort", "--iterations",
                 "Press q or Ctrl-C"):
        assert text in top
