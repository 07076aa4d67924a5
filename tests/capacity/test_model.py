"""The capacity model: the arithmetic of each limit, the loss of a node, the queueing term,
and fitting costs from observations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from wsops.capacity import profiles
from wsops.capacity.model import (
    GIB,
    NodeSpec,
    Profile,
    RoomShape,
    Workload,
    connections_per_worker_cap,
    delivery_p99_ms,
    nodes_reached,
    p99_wait,
    plan,
    worker_cpu_us,
)

PROFILE = Profile(cpu_us_per_accept=100, cpu_us_per_publish=20, cpu_us_per_delivery=10,
                  cpu_us_per_connection_second=1, rss_bytes_per_connection=10_000,
                  rss_bytes_per_process=50 << 20, send_floor_p99_ms=1.0,
                  redis_us_per_publish=40, redis_us_per_node_message=20)


def test_the_workload_adds_up_its_rooms_and_refuses_nonsense() -> None:
    w = Workload(1000, 100, (RoomShape(5, 0.5), RoomShape(101, 0.5)), churn=10)
    assert w.deliveries_per_publish == 53 and w.delivery_rate == 5300 and w.largest_room == 101
    # churn * accept + publishes * publish + deliveries * delivery + connections * idle
    assert worker_cpu_us(w, PROFILE) == 10 * 100 + 100 * 20 + 5300 * 10 + 1000 * 1
    with pytest.raises(ValueError, match="add up to 1"):
        Workload(10, 1, (RoomShape(5, 0.5),))
    with pytest.raises(ValueError, match="negative"):
        Workload(-1, 1)
    with pytest.raises(ValueError, match="subscribers >= 0"):
        Workload(10, 1, ())
    with pytest.raises(ValueError, match=">= 0: cpu_us_per_accept"):
        Profile(**{**profiles.json_object(PROFILE), "cpu_us_per_accept": -1})
    with pytest.raises(ValueError, match="more open files"):
        NodeSpec(max_fds_per_process=10)


def test_each_limit_sets_the_node_count_when_it_is_the_tightest() -> None:
    node = NodeSpec(cores=4, memory_bytes=16 * GIB, max_fds_per_process=20_000)
    # Open files: 19,000 per worker, 76,000 per node.
    assert connections_per_worker_cap(node, PROFILE) == 19_000
    quiet = plan(Workload(1_000_000, 0), PROFILE, node, spare=False)
    assert (quiet.nodes, quiet.limited_by) == (math.ceil(1_000_000 / 76_000), "open files")
    # CPU: 100K publishes/s into rooms of 100 = 10M deliveries/s = 100 cores at 10 us, at a
    # usable 70% of each core: 144 cores, 36 nodes of 4.
    busy = plan(Workload(1000, 100_000, (RoomShape(100),)), PROFILE, node, spare=False)
    assert busy.limited_by == "cpu" and busy.nodes == math.ceil(
        (100_000 * 20 + 10_000_000 * 10 + 1000) / 1e6 / 0.7 / 4)
    # Memory: 1 MB per connection leaves 3.2 GiB / 1 MB per worker.
    fat = Profile(**{**profiles.json_object(PROFILE), "rss_bytes_per_connection": 1_000_000})
    cap = connections_per_worker_cap(node, fat)
    assert cap == int((16 * GIB * 0.8 / 4 - (50 << 20)) // 1_000_000)
    big = plan(Workload(100_000, 0), fat, node, spare=False)
    assert big.limited_by == "memory" and big.nodes == math.ceil(100_000 / (cap * 4))
    assert plan(Workload(0, 0), PROFILE, node, spare=False).limited_by == "minimum"


def test_a_spare_node_is_added_until_losing_one_is_absorbed() -> None:
    node = NodeSpec(cores=2, max_fds_per_process=11_000)  # 10,000 connections per worker
    w = Workload(40_000, 0)
    assert plan(w, PROFILE, node, spare=False).nodes == 2
    spared = plan(w, PROFILE, node)
    assert spared.nodes == 3 and spared.limited_by == "node loss"
    loss = spared.loss
    assert loss["absorbed"] and loss["connections_moved"] == pytest.approx(40_000 / 3)
    assert loss["connections_per_worker_after"] == 10_000
    # The wave: the moved connections' accepts on the survivors' spare cores.
    spare_cores = 4 * (1 - loss["worker_utilization_after"])
    assert loss["reconnect_wave_seconds"] == pytest.approx(40_000 / 3 * 100 / 1e6 / spare_cores)
    lone = plan(Workload(10, 0), PROFILE, NodeSpec(cores=1), spare=False)
    assert lone.nodes == 1 and lone.loss == {"absorbed": False, "connections_moved": 10,
                                             "reason": "a single node"}
    assert plan(Workload(10, 0), PROFILE, NodeSpec(cores=1)).nodes == 2


def test_redis_carries_a_publish_once_and_once_more_per_node_reached() -> None:
    assert nodes_reached(0, 5) == 0 and nodes_reached(3, 1) == 1
    assert nodes_reached(1, 10) == pytest.approx(1) and nodes_reached(10_000, 10) == \
        pytest.approx(10)
    assert nodes_reached(2, 2) == pytest.approx(1.5)  # both on one node half of the time
    node = NodeSpec(cores=1, max_fds_per_process=2000)  # 1,000 connections a node
    p = plan(Workload(2000, 10_000, (RoomShape(2),)), PROFILE, node, spare=False)
    assert p.nodes == 2 or p.nodes > 2
    reached = nodes_reached(2, p.nodes)
    busy = 10_000 * (40 + reached * 20) / 1e6
    assert p.redis_shards == math.ceil(busy / 0.5) and p.redis_cpu_per_shard == pytest.approx(
        busy / p.redis_shards)
    assert plan(Workload(10, 10), PROFILE, NodeSpec(), spare=False).redis_shards == 0


def test_the_p99_is_the_floor_plus_fanout_plus_queueing() -> None:
    assert p99_wait(0.005, 100) == 0 and p99_wait(1.0, 100) == math.inf
    assert p99_wait(0.5, 100) == pytest.approx(-math.log(0.02) * 100 / 0.5 / 2)
    assert p99_wait(0.8, 100) > p99_wait(0.5, 100) > p99_wait(0.2, 100)
    w = Workload(1000, 0)
    assert delivery_p99_ms(w, PROFILE, 4, 0.0) == 1.0  # nothing published: the floor
    w = Workload(1000, 100, (RoomShape(400),))
    # Idle cores: floor + the largest room's share of one worker (400 / 4 x 10 us).
    assert delivery_p99_ms(w, PROFILE, 4, 0.0) == pytest.approx(1.0 + 100 * 10 / 1000)
    assert delivery_p99_ms(w, PROFILE, 4, 0.9) > delivery_p99_ms(w, PROFILE, 4, 0.5)


def test_fitting_replaces_what_the_observations_determine() -> None:
    idle = {"seconds": 10, "cpu_seconds": 0.5, "publishes": 0, "deliveries": 0,
            "connections": 5000, "accepted": 5000, "accept_cpu_seconds": 0.75,
            "rss_bytes_per_connection": 4000}
    # Two room sizes: 15 us per publish and 8 per delivery, after the idle cost of 10 us per
    # connection-second.
    small = {"seconds": 10, "cpu_seconds": (1000 * 23 + 100 * 10 * 10) / 1e6, "publishes": 1000,
             "deliveries": 1000, "connections": 100}
    large = {"seconds": 10, "cpu_seconds": (100 * (15 + 8 * 50) + 100 * 10 * 10) / 1e6,
             "publishes": 100, "deliveries": 5000, "connections": 100}
    fitted = profiles.fit(PROFILE, [idle, small, large], measured="test")
    assert fitted.cpu_us_per_accept == pytest.approx(150)
    assert fitted.rss_bytes_per_connection == 4000
    assert fitted.cpu_us_per_connection_second == pytest.approx(10)
    assert fitted.cpu_us_per_publish == pytest.approx(15)
    assert fitted.cpu_us_per_delivery == pytest.approx(8)
    assert fitted.source["fitted"] == ["cpu_us_per_accept", "cpu_us_per_connection_second",
                                       "cpu_us_per_delivery", "cpu_us_per_publish",
                                       "rss_bytes_per_connection"]
    # One room size: the base's ratio of publish to delivery cost (20:10) is kept.
    one = profiles.fit(PROFILE, [{**small, "cpu_seconds": 1000 * 30 / 1e6 + 0.0001}])
    assert one.cpu_us_per_publish == pytest.approx(2 * one.cpu_us_per_delivery)
    assert one.cpu_us_per_publish + one.cpu_us_per_delivery == pytest.approx(
        30 + 0.0001 * 1e6 / 1000 - 100 * 10 * 1 / 1000)
    # Too few connections to say anything about memory or accepts: the base's.
    few = profiles.fit(PROFILE, [{**idle, "connections": 50, "accepted": 50}])
    assert (few.rss_bytes_per_connection, few.cpu_us_per_accept) == (10_000, 100)
    assert profiles.fit(PROFILE, []) == PROFILE


def test_profile_files_round_trip_and_bad_ones_say_why(tmp_path: Path) -> None:
    default, _ = profiles.load()
    assert default.cpu_us_per_delivery > 0 and default.source.get("date")
    path = tmp_path / "p.json"
    path.write_text(profiles.to_json(PROFILE, [{"seconds": 1}]))
    assert profiles.load(path) == (PROFILE, [{"seconds": 1}])
    for text, why in (("{", "not a wsops cost profile"), ("[]", 'no "profile" object'),
                      ('{"profile": {"x": 1}}', "unknown profile fields: x"),
                      ('{"profile": {}}', "profile fields missing: cpu_us_per_accept"),
                      (json.dumps({"profile": profiles.json_object(PROFILE),
                                   "observations": [1]}), "list of objects")):
        path.write_text(text)
        with pytest.raises(ValueError, match=why):
            profiles.load(path)
    with pytest.raises(ValueError, match="cannot read the profile"):
        profiles.load(tmp_path / "absent.json")


def test_the_cost_fit_weighs_runs_alike_and_never_goes_negative() -> None:
    # cpu/s = 40 per publish + 4 per delivery, three runs of different shapes: exact.
    rows = [(3000.0, 3000.0, 3000 * 44.0), (400.0, 20_000.0, 400 * 40 + 20_000 * 4.0),
            (50.0, 50_000.0, 50 * 40 + 50_000 * 4.0)]
    assert profiles._plane(rows, 2.0) == pytest.approx((40, 4))
    # Deliveries alone explain more than all the CPU: no negative publish cost.
    # (weights 1/y^2: the delivery cost is sum(w d y) / sum(w d d) = 1.1 / 1.01)
    per_publish, per_delivery = profiles._plane(
        [(100.0, 100.0, 100.0), (100.0, 10_000.0, 100_000.0)], 2.0)
    assert per_publish == 0.0 and per_delivery == pytest.approx(1.1 / 1.01)
    # Publishes alone: no negative delivery cost.
    publish, delivery = profiles._plane([(100.0, 100.0, 10_000.0), (100.0, 1000.0, 5000.0)], 2)
    assert delivery == 0.0 and publish > 0
