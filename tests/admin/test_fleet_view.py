"""``/admin/fleet``: this node's stats plus every registered peer's summary as the peer wrote it
in its registry entry; an entry is untrusted input (typed, bounded, junk dropped) and no peer is
ever asked anything."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.support.waits import until
from wsops.admin import fleetpage
from wsops.admin.fleetpage import add_fleet_page
from wsops.admin.listener import AdminListener
from wsops.admin.nodesummary import peer_row, summary_fields

TOKEN = "fleet-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
NOW = 1_800_000_000.0


async def get_fleet(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(url + "/admin/fleet", headers=BEARER) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


def entry(node_id: str, **fields: object) -> dict[str, Any]:
    """A registry record as ``list_nodes`` returns it: typed base fields, the rest strings."""
    return {"id": node_id, "admin_url": f"http://{node_id}:9765", "version": "1.2.3",
            "started_at": NOW - 60, "draining": False, "connections": 5,
            "heartbeat_at": NOW - 1, **fields}


async def serve_page(listeners: list[AdminListener], registry: Any) -> AdminListener:
    async def own() -> dict[str, Any]:
        return {"connections": 3, "rss_bytes": float("nan"), "ready": True}

    async def lister() -> list[dict[str, Any]]:
        if isinstance(registry, Exception):
            raise registry
        return list(registry)

    me = AdminListener(token=TOKEN)
    add_fleet_page(me, own, node_id=lambda: "me", peers=lambda: lister)
    await me.start()
    listeners.append(me)
    return me


async def test_own_stats_first_then_each_peer_from_its_registry_entry(
    listeners: list[AdminListener],
) -> None:
    registry = [
        {"id": "me", "admin_url": "http://ignored"},  # this node's own entry: not a row
        entry("b-good", ready="1", not_ready="", messages_in_per_second="12.5",
              delivery_p99_seconds="0.004", rss_bytes="1048576", messages_out_total="900",
              drain_closed="", drain_total=""),
        entry("c-draining", ready="0", not_ready="draining; broker down", draining=True,
              drain_closed="3", drain_total="10"),
        entry("d-old"),  # an older wsops: no summary fields at all
    ]
    me = await serve_page(listeners, registry)
    body = await get_fleet(me.url)
    assert body["interval"] == fleetpage.DEFAULT_INTERVAL and body["fleet"] is True
    assert body["node_id"] == "me" and body["registry_error"] is None
    assert [n["id"] for n in body["nodes"]] == ["me", "b-good", "c-draining", "d-old"]
    rows = {n["id"]: n for n in body["nodes"]}
    assert rows["me"]["self"] is True and rows["me"]["admin_url"] == me.url
    assert rows["me"]["stats"] == {"connections": 3, "rss_bytes": None, "ready": True}
    good = rows["b-good"]
    assert good["self"] is False and good["error"] is None and good["as_of"] == NOW - 1
    assert good["admin_url"] == "http://b-good:9765"
    stats = good["stats"]
    assert stats["ready"] is True and stats["not_ready_reasons"] == []
    assert stats["messages_in_per_second"] == 12.5 and stats["delivery_p99_seconds"] == 0.004
    assert stats["rss_bytes"] == 1048576 and stats["messages_out_total"] == 900
    assert stats["connections"] == 5 and stats["version"] == "1.2.3"
    assert stats["loop_lag_p99_seconds"] is None  # not in the entry: unknown, not 0
    assert stats["drain"] == {"closed": None, "total": None}
    draining = rows["c-draining"]["stats"]
    assert draining["draining"] is True and draining["ready"] is False
    assert draining["not_ready_reasons"] == ["draining", "broker down"]
    assert draining["drain"] == {"closed": 3, "total": 10}
    assert rows["d-old"]["stats"]["ready"] is None
    assert rows["d-old"]["error"] == ("no summary in its registry entry (an older wsops, or "
                                      "instrumentation off)")


def test_a_hostile_entry_is_typed_and_bounded() -> None:
    row = peer_row({"id": "x" * 5000, "admin_url": "javascript:" + "a" * 5000,
                    "version": ["not", "text"], "started_at": None, "connections": None,
                    "ready": "yes", "not_ready": "r; " * 1000, "draining": "1",
                    "messages_in_per_second": "nan", "messages_out_per_second": "-5",
                    "delivery_p99_seconds": "inf", "rss_bytes": "1e400",
                    "memory_per_connection_bytes": "9" * 5000, "cpu_seconds": "12",
                    "messages_in_total": "1e300", "drain_total": "oops"}, NOW)
    assert len(row["id"]) == 128 and len(row["admin_url"]) == 256
    stats = row["stats"]
    assert stats["version"] is None and stats["uptime_seconds"] is None
    assert stats["ready"] is None and stats["draining"] is True
    assert len("; ".join(stats["not_ready_reasons"])) <= 300
    for name in ("messages_in_per_second", "messages_out_per_second", "delivery_p99_seconds",
                 "rss_bytes", "memory_per_connection_bytes", "messages_in_total"):
        assert stats[name] is None, name
    assert stats["cpu_seconds"] == 12.0 and stats["drain"]["total"] is None


def test_summary_fields_are_small_strings_written_every_beat() -> None:
    fields = summary_fields(lambda: {
        "ready": False, "not_ready_reasons": ["broker down"], "connections": 4,
        "messages_in_per_second": 1 / 3, "delivery_p99_seconds": None,
        "loop_lag_p99_seconds": float("inf"), "rss_bytes": 123456789,
        "messages_in_total": 10**12, "drain": {"closed": 2, "total": 9},
        "connections_by_route": {"/ws": 4}, "broker": {"huge": "x" * 10_000}})
    assert fields["ready"] is False and fields["not_ready"] == "broker down"
    assert fields["messages_in_per_second"] == "0.333333"
    assert fields["delivery_p99_seconds"] == "" and fields["loop_lag_p99_seconds"] == ""
    assert fields["rss_bytes"] == "123456789" and fields["messages_in_total"] == "1000000000000"
    assert fields["drain_closed"] == "2" and fields["drain_total"] == "9"
    assert "broker" not in fields and "connections_by_route" not in fields
    assert sum(len(str(v)) for v in fields.values()) < 400

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    assert summary_fields(broken) == {}  # never breaks the heartbeat that carries it


async def test_an_unreadable_or_huge_registry_is_reported(
    listeners: list[AdminListener], monkeypatch: pytest.MonkeyPatch,
) -> None:
    gone = await serve_page(listeners, ConnectionError("redis went away"))
    body = await get_fleet(gone.url)
    assert body["registry_error"] == "fleet registry unreadable: ConnectionError redis went away"
    assert [n["id"] for n in body["nodes"]] == ["me"]

    monkeypatch.setattr(fleetpage, "MAX_PEERS", 3)
    big = await serve_page(listeners, [entry(f"n{i:02}") for i in range(5)])
    body = await get_fleet(big.url)
    assert [n["id"] for n in body["nodes"]] == ["me", "n00", "n01", "n02"]
    assert body["registry_error"] == ("2 more nodes in the registry are not shown (the page "
                                      "lists 3)")


async def test_concurrent_viewers_share_one_snapshot(listeners: list[AdminListener]) -> None:
    asked = 0
    release = asyncio.Event()

    async def own() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        await release.wait()  # the snapshot is still being made while the others arrive
        return {"connections": asked}

    me = AdminListener(token=TOKEN)
    add_fleet_page(me, own)  # no fleet: the node alone
    await me.start()
    listeners.append(me)
    viewers = [asyncio.create_task(get_fleet(me.url)) for _ in range(5)]
    await until(lambda: me.open_connections == 5 and asked >= 1, what="5 viewers connected")
    release.set()
    bodies = await asyncio.gather(*viewers)
    assert asked == 1 and all(b == bodies[0] for b in bodies)
    assert bodies[0]["fleet"] is False and len(bodies[0]["nodes"]) == 1
    await asyncio.sleep(fleetpage.SHARED_FOR + 0.05)  # the shared snapshot's life passes
    assert (await get_fleet(me.url))["nodes"][0]["stats"]["connections"] == 2
