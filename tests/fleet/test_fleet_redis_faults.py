"""Redis stopped, restarted empty and paused under a fleet behind HAProxy, with a real
Prometheus evaluating the broker-down alert: nodes stay up, delivery goes on locally, crosses
nodes again afterwards, and no client ever has a silent gap."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fleet.conftest import clients, close_all, connect_all, connections, wait_open
from tests.support.artifacts import record
from tests.support.prom import prometheus
from tests.support.scrape import scrape
from tests.support.waits import until
from wsops.client import Client, Gap, Message, PublishAck, RequestTimeout, ServerError
from wsops.observability.alerts import AlertOptions, prometheus_rules

SUBSCRIBERS = 60
ROOM = "prices"
Event = Message | Gap


class Publisher:
    """Publishes numbered messages to one node, remembering each ack and each refusal."""

    def __init__(self, k: int, url: str) -> None:
        self.k = k
        self.client = Client(url, request_timeout=5.0)
        self.acks: list[tuple[float, dict[str, Any], PublishAck]] = []
        self.refused = 0
        self.task: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            data = {"p": self.k, "n": n}
            try:
                ack = await self.client.publish(ROOM, data)
                self.acks.append((time.monotonic(), data, ack))
            except (ServerError, RequestTimeout):
                self.refused += 1  # not stored: the number is simply skipped
            await asyncio.sleep(0.1)  # 30 msg/s from 3 publishers: the log keeps them all


def silent_gaps(events: list[Event]) -> list[str]:
    """Consecutive messages that do not continue each other with no Gap between them."""
    problems, last = [], None
    for e in events:
        if isinstance(e, Gap):
            last = None
        elif last is not None and (e.epoch, e.offset) != (last.epoch, last.offset + 1):
            problems.append(f"{last.epoch}:{last.offset} -> {e.epoch}:{e.offset}")
            last = e
        else:
            last = e
    return problems


def covers(gap: Gap, m: Message) -> bool:
    """Whether ``m`` lies in what ``gap`` says was missed: after its last position (in that
    epoch), up to its new one (in that epoch)."""
    after_last = gap.last_epoch != m.epoch or m.offset > gap.last_offset
    up_to_new = gap.new_epoch != m.epoch or m.offset <= gap.new_offset
    return (m.epoch in (gap.last_epoch, gap.new_epoch)) and after_last and up_to_new


async def broker_up(fleet: Any) -> list[float]:
    return [(await scrape(n.admin_url)).get("wsops_broker_up") for n in fleet.nodes]


@pytest.mark.slow
async def test_redis_outages_keep_the_fleet_serving_and_never_leave_a_silent_gap(
    fleet: Any, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(prometheus_rules(AlertOptions())))
    [down_expr] = [r["expr"] for r in prometheus_rules(AlertOptions())["groups"][0]["rules"]
                   if r["alert"] == "WsopsBrokerDown"]
    targets = [f"127.0.0.1:{n.admin_port}" for n in fleet.nodes]
    events: list[list[Event]] = [[] for _ in range(SUBSCRIBERS)]
    subs = [clients(fleet.url, 1, on_message=events[i].append, on_gap=events[i].append)[0]
            for i in range(SUBSCRIBERS)]
    pubs = [Publisher(k, node.url) for k, node in enumerate(fleet.nodes)]
    stop = asyncio.Event()
    figures: dict[str, Any] = {}

    async def traffic(seconds: float) -> None:  # the publishers run meanwhile
        await asyncio.sleep(seconds)

    async def alert_firing(n: int) -> bool:
        res = await prom.query(down_expr)
        return len(res["data"]["result"]) == n

    async def island_reach() -> list[int]:
        """How many subscribers got island messages of each node's publisher."""
        reach = []
        for p in pubs:
            local = {(a.epoch, a.offset) for _, _, a in p.acks if a.local}
            reach.append(sum(any(isinstance(e, Message) and (e.epoch, e.offset) in local
                                 for e in ev) for ev in events))
        return reach

    async with prometheus(tmp_path, targets, [rules]) as prom:
        try:
            await connect_all([*subs, *(p.client for p in pubs)])
            await asyncio.gather(*(c.subscribe(ROOM) for c in subs))
            per_node = [n - 1 for n in await connections(fleet)]  # minus each node's publisher
            assert sum(per_node) == SUBSCRIBERS and min(per_node) > 0, per_node
            for p in pubs:
                p.task = asyncio.create_task(p.run(stop))
            await traffic(1.0)
            assert await alert_firing(0)

            # 1. Redis killed: every node stays up, reports the broker down, the alert's
            # expression fires in Prometheus, and each node's publisher reaches that node's
            # subscribers (island mode), only those.
            fleet.stop_redis()
            stopped = time.monotonic()
            await until(lambda: _all(broker_up(fleet), 0.0), 15.0)
            figures["broker_down_detected_seconds"] = round(time.monotonic() - stopped, 2)
            await until(lambda: alert_firing(3), 20.0)
            figures["alert_expr_firing_seconds"] = round(time.monotonic() - stopped, 2)
            await traffic(1.5)
            assert all(n.proc.alive for n in fleet.nodes)
            assert await island_reach() == per_node
            locals_stop = [sum(a.local for _, _, a in p.acks) for p in pubs]
            assert min(locals_stop) >= 4, locals_stop

            # 2. Redis back, empty: nodes store their island messages in it, subscribers
            # resume (4001, recovered:false: an explicit Gap) and cross-node delivery resumes.
            fleet.start_redis()
            back = time.monotonic()
            await until(lambda: _all(broker_up(fleet), 1.0), 20.0)
            await until(lambda: alert_firing(0), 20.0)
            await wait_open(subs, 30)
            figures["recovered_after_restart_seconds"] = round(time.monotonic() - back, 2)
            assert all(4001 in c.close_codes for c in subs)
            await until(lambda: fleet.up() == {0, 1, 2}, 20.0)
            restarted = time.monotonic()
            await traffic(1.5)

            # 3. Redis paused (SIGSTOP) past the broker timeout, then resumed: same story,
            # but Redis kept its data.
            fleet.pause_redis()
            paused = time.monotonic()
            try:
                await until(lambda: _all(broker_up(fleet), 0.0), 15.0)
                await until(lambda: alert_firing(3), 20.0)
                await traffic(1.5)
                assert all(n.proc.alive for n in fleet.nodes)
            finally:
                fleet.resume_redis()
            figures["paused_seconds"] = round(time.monotonic() - paused, 2)
            await until(lambda: _all(broker_up(fleet), 1.0), 20.0)
            await wait_open(subs, 30)
            await until(lambda: fleet.up() == {0, 1, 2}, 20.0)
            settled = time.monotonic() + 0.5
            await traffic(2.0)
            stop.set()
            await asyncio.gather(*(p.task for p in pubs if p.task))
            await until(lambda: all(n.proc.alive for n in fleet.nodes) and
                        fleet.up() == {0, 1, 2}, 20.0)

            # Never a silent gap: every jump in a subscriber's stream comes after a Gap.
            for i, ev in enumerate(events):
                assert silent_gaps(ev) == [], (i, silent_gaps(ev)[:3])
            # Nothing accepted is lost but what the empty Redis lost: every acknowledged island
            # message, and every one stored after the restart, is in the room's log exactly
            # once, each publisher's in order.
            lost = pubs[0].acks[0][2].epoch  # the epoch Redis lost when it restarted empty
            log = await subs[0].history(ROOM, 1000)
            assert log[0].offset == 1, "the log was trimmed (--history-size): test too long"
            stored = [(m.data["p"], m.data["n"]) for m in log]
            assert len(stored) == len(set(stored))
            for p in pubs:
                mine = [n for k, n in stored if k == p.k]
                assert mine == sorted(mine)
                since_restart = [d["n"] for _, d, a in p.acks if a.local or a.epoch != lost]
                missing = set(since_restart) - set(mine)
                assert not missing, (p.k, [(round(t - stopped, 3), d["n"], a.local, a.epoch,
                                            a.offset) for t, d, a in p.acks
                                           if d["n"] in missing][:8], lost, log[0])
            # ... and every subscriber has each of the log's messages from after the restart
            # or a Gap that tells it so.
            later = [m for m in log if m.ts / 1000 > time.time() - (time.monotonic() -
                                                                      restarted)]
            for i, ev in enumerate(events):
                seen = {(m.epoch, m.offset) for m in ev if isinstance(m, Message)}
                gaps = [g for g in ev if isinstance(g, Gap)]
                for m in later:
                    assert (m.epoch, m.offset) in seen or any(covers(g, m) for g in gaps), (
                        i, m.offset)
            # Delivery across nodes is back: what every node's publisher stored once all was
            # settled reached every subscriber, wherever it is connected.
            final = [(a.epoch, a.offset) for p in pubs for t, _, a in p.acks if t > settled]
            assert {not a.local for p in pubs for t, _, a in p.acks if t > settled} == {True}
            assert len({e for e, _ in final}) == 1 and len(final) > 20
            for i, ev in enumerate(events):
                seen = {(m.epoch, m.offset) for m in ev if isinstance(m, Message)}
                assert set(final) <= seen, (i, len(set(final) - seen))
            metrics = [await scrape(n.admin_url) for n in fleet.nodes]
            figures.update({
                "subscribers": SUBSCRIBERS, "per_node": per_node,
                "acked": sum(len(p.acks) for p in pubs),
                "acked_local": sum(sum(a.local for _, _, a in p.acks) for p in pubs),
                "refused": sum(p.refused for p in pubs),
                "gaps_per_subscriber_max": max(sum(isinstance(e, Gap) for e in ev)
                                               for ev in events),
                "island_forwarded": sum(m.get("wsops_broker_events_total",
                                              event="island_forwarded") for m in metrics),
                "resyncs": sum(m.get("wsops_broker_events_total", event="resyncs")
                               for m in metrics),
            })
            record("fleet-redis-faults.json", figures)
        finally:
            stop.set()
            await close_all([*subs, *(p.client for p in pubs)])


async def _all(values: Any, want: float) -> bool:
    return all(v == want for v in await values)
