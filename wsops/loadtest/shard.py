"""One load-test process: its shard of connections, driven by the parent over a queue.

The parent starts one process per ``Shard`` (``run_shard``). Each opens its connections, says
``ready``, waits for the shared ``go`` event, runs the scenario for the plan's duration while
sending ``progress`` every second, then (fan-out, echo) stops publishing, waits for the last
deliveries and sends its ``result``: counts per room, latency histograms and errors.

Protocol: wsops v1 (PROTOCOL.md). A publish carries ``{"t": <time.time()>, "s": <sequence>}``
(padded to ``--size``); a subscriber takes the latency from ``t`` (one clock: loopback only)
and checks that each room's sequence grows by one, counting gaps and late or repeated ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import random
import time
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from typing import Any, Protocol

from wsops.backoff import full_jitter, reconnect_hint
from wsops.loadtest.latency import Latencies
from wsops.loadtest.loadconn import LoadConn
from wsops.loadtest.plan import PACING_GAP, Shard, Target, next_publish, parse_target
from wsops.loadtest.rawclient import HandshakeError, client_frame, connect
from wsops.loadtest.timeline import OPEN_STEPS


class Outbox(Protocol):
    def put(self, obj: Any) -> None: ...


@dataclass
class ShardRun:
    shard: Shard
    out: Outbox
    go: Event
    conns: list[LoadConn] = field(default_factory=list)
    publishers: list[LoadConn] = field(default_factory=list)  # the current one of each
    latency: Latencies = field(default_factory=Latencies)
    connect_latency: Latencies = field(default_factory=Latencies)
    errors: dict[str, int] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    reconnects: int = 0
    stopping: bool = False
    keepers: list[asyncio.Task[None]] = field(default_factory=list)
    # For the report's charts: connections opened per 100 ms from ``open_started`` (wall
    # clock, so the parent can line shards up), and a tick per second of the run.
    open_started: float = 0.0
    opened_at: dict[int, int] = field(default_factory=dict)
    ticks: list[dict[str, Any]] = field(default_factory=list)
    _ticked: dict[int, int] = field(default_factory=dict)

    @property
    def plan(self) -> Any:
        return self.shard.plan

    def count_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    async def run(self) -> None:
        plan = self.plan
        target = parse_target(plan.url)
        headers = f"Authorization: Bearer {plan.token}\r\n".encode() if plan.token else b""
        started = time.monotonic()
        self.open_started = time.time()
        await self._open(target, headers, started + plan.connect_timeout)
        opened_in = time.monotonic() - started
        # Connections live until the end: keep them out of every garbage collection, so the
        # generator's own GC pauses do not show up as server latency.
        gc.freeze()
        self.out.put(("ready", self.shard.index, {"opened": len(self.conns),
                                                  "seconds": opened_in}))
        # A multiprocessing Event, set by the parent once every shard is ready.
        if not await asyncio.to_thread(self.go.wait, plan.connect_timeout + 300):
            return  # the parent is gone
        measured = time.monotonic()
        if plan.scenario in ("fanout", "echo"):
            await self._publish_for(plan.duration)
            await self._settle()
        elif plan.scenario == "idle":
            await self._hold(plan.duration)
        elapsed = time.monotonic() - measured
        self.stopping = True
        for keeper in self.keepers:
            keeper.cancel()
        self.out.put(("result", self.shard.index, self._result(opened_in, elapsed)))
        for c in self.conns:
            c.close()
        await asyncio.sleep(0.1)

    # -- connections -----------------------------------------------------------------------

    def _role(self, i: int) -> tuple[str | None, str | None]:
        """(room to subscribe, room to publish) of connection ``i`` (global index)."""
        plan = self.plan
        if plan.scenario == "echo":
            return f"echo-{i}", f"echo-{i}"
        if plan.scenario == "fanout":
            room = f"load-{i % plan.rooms}"
            return (None, room) if i < plan.rooms else (room, None)
        return None, None

    async def _open(self, target: Target, headers: bytes, deadline: float) -> None:
        shard, plan = self.shard, self.plan
        sources = shard.sources or (None,)
        gap = plan.processes / plan.connect_rate if plan.connect_rate else 0.0
        sem = asyncio.Semaphore(256)  # handshakes in flight per process

        async def one(k: int) -> None:
            i = shard.first + k
            sub, pub = self._role(i)
            async with sem:
                t0 = time.monotonic()
                try:
                    async with asyncio.timeout(max(1.0, deadline - t0)):
                        conn = await connect(
                            target.address, target.port, target.path,
                            local_addr=sources[k % len(sources)],
                            factory=lambda: LoadConn(target, headers, self))
                        assert isinstance(conn, LoadConn)
                        now = time.monotonic()
                        self.connect_latency.add(now - t0)
                        self.conns.append(conn)
                        step = int((time.time() - self.open_started) * OPEN_STEPS)
                        self.opened_at[step] = self.opened_at.get(step, 0) + 1
                        if sub is not None:
                            conn.room = sub
                            conn.send(json.dumps({"op": "subscribe", "room": sub, "id": 0})
                                      .encode())
                            await conn.subscribed
                        else:
                            conn.subscribed.set_result(None)
                except (OSError, TimeoutError, HandshakeError, RuntimeError) as exc:
                    self.count_error(type(exc).__name__ + (f": {exc}"[:80] if str(exc) else ""))
                    return
            if pub is not None:
                conn.pub_room = pub
                self.publishers.append(conn)
            if plan.reconnect:
                self.keepers.append(asyncio.create_task(self._keep(conn, target, headers)))

        tasks = []
        for k in range(shard.connections):
            if time.monotonic() > deadline:
                break
            tasks.append(asyncio.create_task(one(k)))
            if gap:
                await asyncio.sleep(gap)
            elif k % 256 == 255:
                await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    async def _keep(self, conn: LoadConn, target: Target, headers: bytes) -> None:
        """``--reconnect``: when the server closes ``conn``, connect again (after the close's
        reconnect hint, else a short full-jitter backoff), resubscribe from the last message
        and send again what was left unanswered; and so on for the new connection."""
        attempt = 0
        while True:
            await asyncio.shield(conn.closed)  # cancelling this task must not mark it closed
            if self.stopping:
                return
            hint = (reconnect_hint(conn.close_code or 1006, conn.close_reason) if not attempt
                    else None)
            delay = random.uniform(0, hint) if hint is not None else full_jitter(attempt, 0.05, 2.0)
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(10.0):
                    new = await connect(target.address, target.port, target.path,
                                        factory=functools.partial(LoadConn, target, headers,
                                                                  self, conn))
                    assert isinstance(new, LoadConn)
                    seen = new.seen
                    if new.room is not None:
                        since = {"offset": seen.offset, "epoch": seen.epoch} if seen.epoch \
                            else None
                        new.send(json.dumps({"op": "subscribe", "room": new.room, "id": 0,
                                             "since": since}).encode())
                        await new.subscribed
                    else:
                        new.subscribed.set_result(None)
            except (OSError, TimeoutError, HandshakeError, RuntimeError) as exc:
                self.count_error("reconnect " + type(exc).__name__)
                attempt += 1
                continue  # ``conn`` is still the closed one: wait no more, retry
            attempt = 0
            self.reconnects += 1
            self.conns.append(new)
            if new.pub_room is not None:
                self.publishers[self.publishers.index(conn)] = new
                for request_id in sorted(seen.unacked):
                    new.write_raw(seen.unacked[request_id])
            conn = new

    # -- scenarios -------------------------------------------------------------------------

    async def _publish_for(self, seconds: float) -> None:
        """Publish at the shard's rate, over its publishers in turn, at random moments
        (``plan.next_publish``), each sent at most ``PACING_GAP`` after its moment."""
        pubs = self.publishers  # replaced in place by reconnections (``_keep``)
        if not pubs:
            await self._hold(seconds)
            return
        plan = self.plan
        per_pub = plan.rate / (plan.rooms if plan.scenario == "fanout" else plan.connections)
        rate = per_pub * len(pubs)
        pad = "x" * max(0, plan.size - 48)
        seq = {conn.pub_room: 0 for conn in pubs if conn.pub_room is not None}
        rng = random.Random()
        start = time.monotonic()
        k, reported = 0, 0
        moment = next_publish(start, rate, rng)
        while (now := time.monotonic()) - start < seconds:
            while moment <= now:
                moment = next_publish(moment, rate, rng)
                conn = pubs[k % len(pubs)]
                room = conn.pub_room
                assert room is not None
                k += 1
                seq[room] += 1
                data = {"t": time.time(), "s": seq[room], "pad": pad}
                frame = client_frame(json.dumps(
                    {"op": "publish", "room": room, "id": seq[room], "data": data},
                    separators=(",", ":")).encode())
                if conn.track:
                    conn.seen.unacked[seq[room]] = frame  # until answered (sent again after
                conn.write_raw(frame)  # a reconnection)
                self.published[room] = self.published.get(room, 0) + 1
            if int(now - start) > reported:  # on the second, not a second after the last one:
                reported = int(now - start)  # ticks do not drift (the report's timeline)
                self._progress(now - start)
            wake = min(moment, start + reported + 1, start + seconds)
            await asyncio.sleep(max(PACING_GAP, wake - time.monotonic()))
        self._progress(time.monotonic() - start)  # publishing is over: the settling follows

    async def _settle(self) -> None:
        """Wait until every publish is answered and deliveries stop, at most ``settle`` s."""
        plan = self.plan
        end = time.monotonic() + plan.settle
        total = sum(self.published.values())
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < end:
            received = sum(c.seen.received for c in self.conns)
            if received != last:
                last, quiet_since = received, time.monotonic()
            answered = sum(self.acked.values()) + self.refused >= total
            if answered and time.monotonic() - quiet_since > 1.0:  # (outlasts a GC pause)
                return
            await asyncio.sleep(0.05)

    async def _hold(self, seconds: float) -> None:
        start = time.monotonic()
        k = 0
        while (now := time.monotonic()) - start < seconds:
            k += 1  # on each second from the start (ticks do not drift)
            await asyncio.sleep(max(0.0, min(start + k, start + seconds) - now))
            self._progress(time.monotonic() - start)

    # -- reporting -------------------------------------------------------------------------

    def _progress(self, elapsed: float) -> None:
        tick = self._tick(elapsed)
        self.out.put(("progress", self.shard.index, {
            "elapsed": elapsed, "open": tick["open"], "published": tick["published"],
            "received": tick["received"], "p99_ms": self.latency.summary()["p99_ms"],
        }))

    def _tick(self, elapsed: float) -> dict[str, Any]:
        """Counts so far and the latencies seen since the last tick (histogram counts)."""
        counts = self.latency.counts
        fresh = {str(k): n - self._ticked.get(k, 0) for k, n in counts.items()
                 if n != self._ticked.get(k, 0)}
        self._ticked = dict(counts)
        tick = {"t": elapsed, "open": sum(not c.closed.done() for c in self.conns),
                "published": sum(self.published.values()),
                "received": sum(c.seen.received for c in self.conns), "latency": fresh}
        self.ticks.append(tick)
        return tick

    def _result(self, opened_in: float, elapsed: float) -> dict[str, Any]:
        self._tick(elapsed)  # the last deliveries (settling) too
        rooms: dict[str, dict[str, int]] = {}
        close_codes: dict[str, int] = {}
        current = {id(c.seen): c for c in self.conns}  # the newest connection of each
        for c in self.conns:
            if c.close_code is not None:
                close_codes[str(c.close_code)] = close_codes.get(str(c.close_code), 0) + 1
            if c.room is None or current[id(c.seen)] is not c:
                continue
            r = rooms.setdefault(c.room, {"subscribers": 0, "received": 0, "gaps": 0,
                                          "out_of_order": 0, "published": 0})
            r["subscribers"] += 1
            r["received"] += c.seen.received
            r["gaps"] += c.seen.gaps
            r["out_of_order"] += c.seen.out_of_order
        for room, n in self.published.items():
            r = rooms.setdefault(room, {"subscribers": 0, "received": 0, "gaps": 0,
                                        "out_of_order": 0, "published": 0})
            r["published"] += n
            r["acked"] = self.acked.get(room, 0)
        return {
            "opened": len(self.conns) - self.reconnects, "reconnects": self.reconnects,
            "open_at_end": sum(not c.closed.done() for c in self.conns),
            "opened_in": opened_in, "elapsed": elapsed, "rooms": rooms,
            "refused": self.refused, "errors": self.errors, "close_codes": close_codes,
            "latency": self.latency.to_wire(), "connect_latency": self.connect_latency.to_wire(),
            "open_started": self.open_started,
            "opened_at": {str(k): n for k, n in self.opened_at.items()}, "ticks": self.ticks,
        }


def run_shard(shard: Shard, out: Outbox, go: Event) -> None:
    """Process entry point."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    try:
        runner(ShardRun(shard, out, go).run())
    except Exception as exc:  # the parent reports it; a crashed shard must not hang the run
        with contextlib.suppress(Exception):
            out.put(("error", shard.index, repr(exc)))
