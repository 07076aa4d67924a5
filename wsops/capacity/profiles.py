"""Cost profiles: read, written, and fitted from measured runs. Pure (no I/O but ``load``).

A profile file is JSON: ``{"profile": {costs...}, "observations": [...]}``. An observation is
what one run measured of a node (``wsops loadtest --profile``, ``wsops plan --from-fleet``)::

    {"source": "...", "seconds": T, "cpu_seconds": C, "publishes": P, "deliveries": D,
     "connections": N, "accepted": A, "accept_cpu_seconds": CA,
     "rss_bytes_per_connection": R, "broker_messages": B, "redis_cpu_seconds": RC}

(any of them may be missing; ``broker_messages``, stores and pub/sub messages to nodes, and
``redis_cpu_seconds`` for a run of nodes on Redis). Fitting keeps a base profile's costs and
replaces those the observations determine: the CPU per accepted connection from the connect
phases, memory per connection from the runs that opened enough connections, the idle cost from
runs without publishes, and the publish and delivery costs from the load windows: least squares
of the relative error of ``CPU/s = publishes/s * publish + deliveries/s * delivery`` when
the runs have
different room sizes; from one room size, the delivery cost with the base profile's ratio of
the two; a fleet run's extra CPU is the nodes' side of Redis, per broker message.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from wsops.capacity.model import Profile
from wsops.memory_per_connection import MIN_CONNECTIONS

DEFAULT_NAME = "python-svc.json"


def from_dict(data: dict[str, Any]) -> Profile:
    """A Profile from its JSON object; ValueError naming what is missing or unknown."""
    known = {f.name for f in fields(Profile)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown profile fields: {', '.join(unknown)}")
    missing = sorted(f.name for f in fields(Profile) if f.name not in data
                     and f.default is MISSING and f.default_factory is MISSING)
    if missing:
        raise ValueError(f"profile fields missing: {', '.join(missing)}")
    return Profile(**data)


def to_json(profile: Profile, observations: list[dict[str, Any]] | None = None) -> str:
    return json.dumps({"profile": asdict(profile), "observations": observations or []},
                      indent=2) + "\n"


def load(path: Path | None = None) -> tuple[Profile, list[dict[str, Any]]]:
    """A profile file's profile and observations (the shipped default without ``path``)."""
    if path is None:
        text = resources.files("wsops.capacity").joinpath(DEFAULT_NAME).read_text()
        where = f"the default profile ({DEFAULT_NAME})"
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read the profile {path}: {exc.strerror}") from None
        where = str(path)
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("profile"), dict):
            raise ValueError('it has no "profile" object')
        observations = doc.get("observations", [])
        if not isinstance(observations, list) or not all(isinstance(o, dict)
                                                         for o in observations):
            raise ValueError('"observations" must be a list of objects')
        return from_dict(doc["profile"]), observations
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where} is not a wsops cost profile: {exc}") from None


def _num(obs: dict[str, Any], key: str) -> float | None:
    value = obs.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def fit(base: Profile, observations: list[dict[str, Any]], **source: Any) -> Profile:
    """``base`` with the costs ``observations`` determine (see the module's docstring)."""
    changes: dict[str, Any] = {}
    accepts = [(o["accept_cpu_seconds"], o["accepted"]) for o in observations
               if (_num(o, "accepted") or 0) >= MIN_CONNECTIONS
               and _num(o, "accept_cpu_seconds") is not None]
    if accepts:
        changes["cpu_us_per_accept"] = sum(c for c, _ in accepts) * 1e6 / sum(
            n for _, n in accepts)
    memory = [(o["rss_bytes_per_connection"], o["connections"]) for o in observations
              if (_num(o, "connections") or 0) >= MIN_CONNECTIONS
              and _num(o, "rss_bytes_per_connection") is not None]
    if memory:  # weighted by connections: the allocator's steps matter less in larger runs
        changes["rss_bytes_per_connection"] = sum(r * n for r, n in memory) / sum(
            n for _, n in memory)
    windows = [o for o in observations if all(_num(o, k) is not None for k in (
        "seconds", "cpu_seconds", "publishes", "deliveries", "connections"))
        and o["seconds"] > 0]
    idle = [o for o in windows if o["publishes"] == 0 and o["connections"] > 0]
    if idle:
        changes["cpu_us_per_connection_second"] = sum(o["cpu_seconds"] for o in idle) * 1e6 / \
            sum(o["connections"] * o["seconds"] for o in idle)
    idle_cost = changes.get("cpu_us_per_connection_second", base.cpu_us_per_connection_second)
    busy = [(o["publishes"] / o["seconds"], o["deliveries"] / o["seconds"],
             o["cpu_seconds"] * 1e6 / o["seconds"] - o["connections"] * idle_cost)
            for o in windows if o["publishes"] > 0 and not _num(o, "broker_messages")]
    if busy:
        publish, delivery = _plane(busy, base.cpu_us_per_publish / max(
            base.cpu_us_per_delivery, 1e-9))
        changes["cpu_us_per_publish"], changes["cpu_us_per_delivery"] = publish, delivery
    # Fleet runs (nodes on Redis): what the same work costs more is the nodes' side of Redis.
    fleet = [o for o in windows if (_num(o, "broker_messages") or 0) > 0]
    if fleet:
        costs = replace(base, **{k: v for k, v in changes.items() if k != "source"})
        extra = sum(o["cpu_seconds"] * 1e6 - o["connections"] * o["seconds"]
                    * costs.cpu_us_per_connection_second - o["publishes"]
                    * costs.cpu_us_per_publish - o["deliveries"] * costs.cpu_us_per_delivery
                    for o in fleet)
        changes["cpu_us_per_broker_message"] = max(0.0, extra) / sum(
            o["broker_messages"] for o in fleet)
    hops = [o["broker_hop_p99_ms"] for o in fleet if _num(o, "broker_hop_p99_ms") is not None]
    if hops:
        changes["broker_hop_p99_ms"] = max(0.0, sum(hops) / len(hops))
    redis = [o for o in fleet if _num(o, "redis_cpu_seconds") is not None]
    if redis:  # stores and node messages in the base profile's ratio
        ratio = base.redis_us_per_publish / max(base.redis_us_per_node_message, 1e-9)
        node_message = sum(o["redis_cpu_seconds"] * 1e6 for o in redis) / sum(
            o["publishes"] * ratio + (o["broker_messages"] - o["publishes"]) for o in redis)
        changes["redis_us_per_publish"] = ratio * node_message
        changes["redis_us_per_node_message"] = node_message
    if source:
        changes["source"] = {**source, "fitted": sorted(k for k in changes if k != "source")}
    return replace(base, **changes)


def _plane(rows: list[tuple[float, float, float]], ratio: float) -> tuple[float, float]:
    """(publish, delivery) costs, both >= 0, fitting ``cpu = publishes * publish + deliveries
    * delivery`` (per second, least squares of the relative error) to ``rows`` of
    (publishes/s, deliveries/s, CPU us/s); when the rows cannot tell the two apart (one ratio
    of deliveries to publishes), ``publish = ratio * delivery``."""
    # Relative errors count alike (each row weighed by 1/y^2): the busiest run does not get
    # to set both costs.
    w = [1 / y ** 2 if y > 0 else 0.0 for _, _, y in rows]
    spp = sum(k * p * p for k, (p, _, _) in zip(w, rows, strict=True))
    spd = sum(k * p * d for k, (p, d, _) in zip(w, rows, strict=True))
    sdd = sum(k * d * d for k, (_, d, _) in zip(w, rows, strict=True))
    spy = sum(k * p * y for k, (p, _, y) in zip(w, rows, strict=True))
    sdy = sum(k * d * y for k, (_, d, y) in zip(w, rows, strict=True))
    det = spp * sdd - spd * spd
    if det <= 1e-9 * spp * sdd:  # one room shape: the base profile's ratio of the two
        delivery = max(0.0, sum(y for _, _, y in rows)) / max(
            sum(ratio * p + d for p, d, _ in rows), 1e-9)
        return ratio * delivery, delivery
    publish, delivery = (spy * sdd - sdy * spd) / det, (sdy * spp - spy * spd) / det
    if publish < 0:
        return 0.0, max(0.0, sdy / sdd)
    if delivery < 0:
        return max(0.0, spy / spp), 0.0
    return publish, delivery


def replace_costs(profile: Profile, **costs: Any) -> Profile:
    """``profile`` with some costs set (checked like any profile)."""
    return replace(profile, **costs)


def json_object(profile: Profile) -> dict[str, Any]:
    return asdict(profile)
