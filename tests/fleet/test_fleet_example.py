"""``python examples/fleet/fleet.py`` as a user runs it: up, usable through HAProxy, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

from tests.support.examples import FLEET_EXAMPLE, need_binaries
from tests.support.waits import until
from wsops.client import Client


async def _started(*args: str, within: float) -> tuple[asyncio.subprocess.Process, str]:
    """The fleet script with ``args``, and what it printed until it said it is up."""
    need_binaries()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(FLEET_EXAMPLE), "--port", "0", *args, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(within):
            while not any(line.startswith("Ctrl-C") for line in lines):
                line = (await proc.stdout.readline()).decode()
                assert line, "".join(lines)
                lines.append(line)
    except BaseException:
        proc.send_signal(signal.SIGINT)  # the script stops what it started
        await asyncio.wait_for(proc.wait(), 30)
        raise
    return proc, "".join(lines)


async def test_the_fleet_script_starts_a_usable_fleet_and_ctrl_c_stops_every_process() -> None:
    proc, text = await _started(within=60)
    try:
        [url] = re.findall(r"clients connect to (ws://\S+)", text)
        assert len(re.findall(r"node\d\s+ws://", text)) == 3 and "wsops status --redis" in text
        children = psutil.Process(proc.pid).children(recursive=True)
        assert sorted(c.name() for c in children if c.name() in ("haproxy", "redis-server")) \
            == ["haproxy", "redis-server"]
        async with Client(url) as a, Client(url) as b:
            await b.subscribe("demo")
            ack = await a.publish("demo", "hello")
            assert ack.offset == 1 and (await b.history("demo"))[0].data == "hello"
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert not [c for c in children if c.is_running() and c.status() != "zombie"]


@pytest.mark.slow
async def test_the_fleet_script_on_a_redis_cluster_and_status_shows_its_shards() -> None:
    """``--cluster``: six redis-servers as 3 masters + 3 replicas; rooms spread over the shards;
    ``wsops status --redis`` lists the nodes and the shards (slots, master, state, keys)."""
    from tests.support.runcli import cli

    proc, text = await _started("--nodes", "2", "--cluster", within=90)
    try:
        [url] = re.findall(r"clients connect to (ws://\S+)", text)
        redis_url = re.findall(r"redis\s+(redis\+cluster://\S+)", text)[0]
        children = psutil.Process(proc.pid).children(recursive=True)
        assert sum(c.name() == "redis-server" for c in children) == 6
        rooms = [f"room-{i}" for i in range(9)]
        async with Client(url) as a, Client(url) as b:
            for room in rooms:
                await b.subscribe(room)
                assert (await a.publish(room, room)).offset == 1
            assert sorted([(await b.history(r))[0].data for r in rooms]) == rooms
        async def shards_with_replicas() -> list[dict[str, Any]] | None:
            # A replica shows once it attached to its master: seconds after the cluster forms
            # on a loaded machine (CI saw one missing right after the rooms were written).
            result = await cli("status", "--redis", redis_url, "--json")
            assert result.exit_code == 0, result.stdout + result.stderr
            found: list[dict[str, Any]] = json.loads(result.stdout)["broker"]["shards"]
            ok = len(found) == 3 and all(s["up"] and len(s["replicas"]) == 1 for s in found)
            return found if ok else None

        shards = await until(shards_with_replicas, 30.0, what="3 shards up, a replica each",
                             step=0.5)
        assert sum(b - a + 1 for s in shards for a, b in s["slots"]) == 16384
        assert all(s["keys"] > 0 for s in shards)  # every shard holds some of the rooms
        table = await cli("status", "--redis", redis_url)
        assert "broker: 3 shards" in table.stdout and table.stdout.count(" up ") >= 3
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert not [c for c in children if c.is_running() and c.status() != "zombie"]
