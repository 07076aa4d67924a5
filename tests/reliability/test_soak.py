"""Soak: connection churn and traffic against a real ``wsops serve`` for a bounded time, with
``wsops leaks`` run against the server itself. Nothing lost, no growing suspect, RSS flat.

``WSOPS_SOAK_SECONDS`` sets the length (default 600: the 10 minutes CI's slow set runs; longer
on demand). Figures go to tests/artifacts/soak.json and RELIABILITY.md."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest

from tests.support.artifacts import artifact, record
from tests.support.procs import start_serve
from tests.support.wsclient import RawClient

SECONDS = max(90.0, float(os.environ.get("WSOPS_SOAK_SECONDS", "600")))
ROOMS = [f"soak-{i}" for i in range(5)]
STAYING = 100  # subscribers that stay the whole run (20 per room)
CHURN_PER_SECOND = 20  # new short-lived connections per second
PUBLISH_PER_SECOND = 25
# The hostile payload mix (issue #14): large strings and 63 KB of `[{},{},...]` (which decodes
# to ~1.6 MB of objects) to MIX_ROOMS rooms, at MIX_PER_SECOND, under an 8 MiB history budget
# that it fills within the warm-up and then turns over every ~10 s (within `wsops leaks`'s own
# warm-up: tracemalloc only sees entries stored after it starts, so the budget must have turned
# over once before its samples count).
MIX_ROOMS = [f"mix-{i}" for i in range(20)]
MIX_PER_SECOND = 20
MIX_PAYLOADS = ["x" * 60_000, "[" + ",".join(["{}"] * 21_000) + "]", "small"]
HISTORY_MEMORY = 8 << 20
RSS_TOLERANCE = 0.05  # RSS after warm-up may end at most 5% above where it started


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points) or 1.0
    return 60 * sum((t - mx) * (v - my) for t, v in points) / den


@pytest.mark.slow
async def test_soak_churn_and_traffic_lose_nothing_and_leak_nothing() -> None:
    # History rings of 100: full after 20 s, so the leak check (second half) sees them full,
    # not refilling (memory that grows until a bound is not a leak, but looks like one).
    sp = await asyncio.to_thread(start_serve, "--allow-anonymous", "--heartbeat", "5",
                                 "--history-size", "100", "--history-memory",
                                 str(HISTORY_MEMORY))
    stop = asyncio.Event()
    published = {room: 0 for room in ROOMS}
    mixed = {room: 0 for room in MIX_ROOMS}
    churned = {"opened": 0, "closed": 0, "aborted": 0, "failed": 0}
    churn_errors: list[BaseException] = []  # what any short-lived client raised
    samples: list[tuple[float, dict[str, Any]]] = []
    staying: list[RawClient] = []
    start = time.monotonic()

    async def stats(session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(sp.admin_url + "/admin/stats") as r:
            body: dict[str, Any] = await r.json()
            return body

    async def publisher() -> None:
        pub = await RawClient.connect(sp.url)
        k = 0
        while not stop.is_set():
            room = ROOMS[k % len(ROOMS)]
            k += 1
            rep = await pub.call("publish", room, data={"n": published[room] + 1})
            assert rep["ok"], rep
            published[room] += 1
            await asyncio.sleep(1 / PUBLISH_PER_SECOND)
        await pub.close()

    async def mix_publisher() -> None:
        pub = await RawClient.connect(sp.url)
        k = 0
        while not stop.is_set():
            room, k = MIX_ROOMS[k % len(MIX_ROOMS)], k + 1
            payload = MIX_PAYLOADS[k % len(MIX_PAYLOADS)]
            # The amplifying payload goes as JSON text: an array, not a string.
            data = payload if payload.startswith("[") else json.dumps(payload)
            req_id = next(pub.ids)
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            pub.replies[req_id] = fut
            await pub.send_raw(f'{{"op":"publish","room":"{room}","id":{req_id},"data":{data}}}')
            rep = await asyncio.wait_for(fut, 10)
            assert rep["ok"], rep
            mixed[room] += 1
            await asyncio.sleep(1 / MIX_PER_SECOND)
        await pub.close()

    async def one_churner(session: aiohttp.ClientSession) -> None:
        try:
            ws = await session.ws_connect(sp.url)
        except aiohttp.ClientError:
            churned["failed"] += 1
            return
        churned["opened"] += 1
        await ws.send_json({"op": "subscribe", "room": random.choice(ROOMS), "id": 1})
        await asyncio.sleep(random.uniform(0.05, 2.0))
        if random.random() < 0.3:  # a client that vanishes without a close frame
            assert ws._response.connection is not None
            ws._response.connection.transport.abort()  # type: ignore[union-attr]
            churned["aborted"] += 1
        else:
            await ws.close()
            churned["closed"] += 1

    async def churn(session: aiohttp.ClientSession) -> None:
        tasks: set[asyncio.Task[None]] = set()

        def ended(t: asyncio.Task[None]) -> None:
            tasks.discard(t)
            error = None if t.cancelled() else t.exception()
            if error is not None:
                churn_errors.append(error)

        while not stop.is_set():
            for _ in range(CHURN_PER_SECOND):
                t = asyncio.create_task(one_churner(session))
                tasks.add(t)
                t.add_done_callback(ended)
            await asyncio.sleep(1.0)
        if tasks:
            await asyncio.wait(tasks)  # each one's error, if any, is in churn_errors

    async def sampler(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - start, await stats(session)))
            await asyncio.sleep(max(1.0, SECONDS / 60))

    try:
        for i in range(STAYING):
            c = await RawClient.connect(sp.url)
            await c.call("subscribe", ROOMS[i % len(ROOMS)])
            staying.append(c)
        mix_sub = await RawClient.connect(sp.url)
        staying.append(mix_sub)
        for room in MIX_ROOMS:
            assert (await mix_sub.call("subscribe", room))["ok"]
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(f) for f in (publisher(), mix_publisher(),
                                                       churn(session), sampler(session))]
            # Thirds: warm-up, RSS watched (no tracemalloc), then wsops leaks on the server
            # while the churn goes on (tracemalloc costs memory of its own: not in the RSS
            # window). --warmup 25: tracemalloc sees only what is allocated after it starts,
            # so the history rings (5 x 100 messages at 5/s per room) must turn over first.
            warmup, watched_until = SECONDS / 3, 2 * SECONDS / 3
            await asyncio.sleep(watched_until)
            leaks = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "wsops", "leaks", "run", sp.admin_url, "--warmup", "25",
                "--duration", str(SECONDS / 3 - 30), "--interval", str(max(1.0, SECONDS / 60)),
                "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await leaks.communicate()
            stop.set()
            await asyncio.gather(*tasks)
            final = await stats(session)

        # Every short-lived client was admitted, and ended as it chose (close or abort).
        assert churn_errors == [], [repr(e) for e in churn_errors[:5]]
        assert churned["failed"] == 0, churned
        assert churned["opened"] == churned["closed"] + churned["aborted"] > 0, churned

        # Every staying subscriber got its room's messages, each once, in order.
        got_mix = await mix_sub.messages(sum(mixed.values()), timeout=30)
        for room in MIX_ROOMS:
            assert [m["offset"] for m in got_mix if m["room"] == room] == list(
                range(1, mixed[room] + 1)), room
        assert mix_sub.close_code is None
        history = final["broker"]
        assert history["history_bytes"] <= HISTORY_MEMORY and history["history_evicted"] > 0
        for i, c in enumerate(staying[:STAYING]):
            room = ROOMS[i % len(ROOMS)]
            got = await c.messages(published[room], timeout=30)
            assert [m["data"]["n"] for m in got] == list(range(1, published[room] + 1)), i
            assert c.close_code is None

        report = json.loads(out)
        artifact("soak-leaks.json").write_bytes(out)  # wsops leaks' own report, for reading
        suspects = report.get("suspects", 0)
        flagged = [f"{f['kind']} {f['name']}" for key in ("sites", "types", "checks")
                   for f in report.get(key, []) if f.get("suspect")]
        assert leaks.returncode == 0, (leaks.returncode, suspects, flagged[:5],
                                       report.get("websockets"), err.decode()[-500:])
        assert report["memory"]["hint"].startswith("No steady growth"), report["memory"]

        artifact("soak-rss.json").write_text(json.dumps(
            [(round(t, 1), s["rss_bytes"], s["connections"]) for t, s in samples]))
        after = [(t, s["rss_bytes"]) for t, s in samples if warmup <= t < watched_until]
        assert len(after) >= 5, len(after)
        rss_start, rss_end = after[0][1], after[-1][1]
        drift = (rss_end - rss_start) / rss_start
        slope_kib = slope_per_minute(after) / 1024
        assert drift <= RSS_TOLERANCE, (rss_start, rss_end, drift)
        assert sp.proc.poll() is None
        record("soak.json", {
            "seconds": SECONDS, "staying": STAYING, "churn_per_second": CHURN_PER_SECOND,
            "churned": churned, "published": sum(published.values()),
            "deliveries_to_staying": sum(published[ROOMS[i % len(ROOMS)]]
                                         for i in range(STAYING)),
            "mix_published": sum(mixed.values()), "history_memory_mib": HISTORY_MEMORY >> 20,
            "history_evicted": history["history_evicted"],
            "history_mib_end": round(history["history_bytes"] / 2**20, 1),
            "lost": 0, "leak_suspects": suspects, "leak_samples": report.get("samples"),
            "rss_mib_after_warmup": round(rss_start / 2**20, 1),
            "rss_mib_end": round(rss_end / 2**20, 1), "rss_drift_pct": round(100 * drift, 2),
            "rss_slope_kib_per_min": round(slope_kib, 1),
            "rss_window_seconds": [round(warmup), round(watched_until)],
            "leaks_verdict": report["memory"]["hint"],
            "connections_end": final["connections"],
            "memory_per_connection_bytes_end": final.get("memory_per_connection_bytes"),
        })
    finally:
        stop.set()
        for c in staying:
            await c.close()
        sp.stop()
