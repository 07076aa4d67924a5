"""``python examples/fleet/fleet.py`` as a user runs it: up, usable through HAProxy, Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys

import psutil  # type: ignore[import-untyped]

from tests.support.examples import FLEET_EXAMPLE, need_binaries
from wsops.client import Client


async def test_the_fleet_script_starts_a_usable_fleet_and_ctrl_c_stops_every_process() -> None:
    need_binaries()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(FLEET_EXAMPLE), "--port", "0", stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not any(line.startswith("Ctrl-C") for line in lines):
                line = (await proc.stdout.readline()).decode()
                assert line, "".join(lines)
                lines.append(line)
        text = "".join(lines)
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
