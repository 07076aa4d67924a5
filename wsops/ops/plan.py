"""``wsops plan``: the fleet a workload needs, from measured costs (``wsops.capacity``)."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer

from wsops.admin.access import ADMIN_TOKEN_ENV
from wsops.admin.apiclient import fetch_stats
from wsops.capacity import profiles
from wsops.capacity.model import GIB, NodeSpec, Plan, Profile, RoomShape, Workload, plan
from wsops.ops.fleetview import normalize_url
from wsops.ops.status import registry_admin_urls

ROOMS_HELP = ("Subscribers per room, or a mix 'SIZE:SHARE,...' of the publishes' rooms "
              "(e.g. '5:0.9,1000:0.1': 90% of publishes into rooms of 5, 10% into rooms of "
              "1,000).")


def parse_rooms(spec: str) -> tuple[RoomShape, ...]:
    """``5`` or ``5:0.9,1000:0.1`` (shares may be percentages: ``5:90%``)."""
    shapes = []
    for part in spec.split(","):
        size, _, share = part.strip().partition(":")
        try:
            value = 1.0 if not share else (float(share.rstrip("%")) / 100 if share.endswith("%")
                                           else float(share))
            shapes.append(RoomShape(int(size), value))
        except ValueError:
            raise ValueError(f"--rooms {spec!r}: each part is SIZE or SIZE:SHARE "
                             "(e.g. 5:0.9,1000:0.1)") from None
    return tuple(shapes)


def workload_from_file(path: Path) -> dict[str, Any]:
    """A workload file: JSON with the options' names (``connections``, ``publish_rate``,
    ``rooms`` as in --rooms, ``payload``, ``churn``)."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    known = {"connections", "publish_rate", "rooms", "payload", "churn"}
    if not isinstance(data, dict) or set(data) - known:
        raise ValueError(f"{path}: a JSON object with some of {', '.join(sorted(known))}")
    return data


def _registry(redis_url: str) -> list[str]:
    """The admin URLs of the fleet registry in ``redis_url`` (``--redis``), normalized."""
    listed = [normalize_url(u) for u in registry_admin_urls(redis_url)]
    if not listed:
        raise typer.BadParameter("the fleet registry lists no node with an admin URL",
                                 param_hint="--redis")
    return listed


def from_fleet(urls: list[str], token: str | None, window: float,
               skippable: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """One observation per node: its counters read twice, ``window`` seconds apart. A node
    in ``skippable`` (found in the registry, not named) that does not answer is left out with
    a warning: a registry may still list a node that has just gone."""
    async def run() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            first = await fetch_stats(session, urls, token)
            began = time.monotonic()
            for left in range(math.ceil(window), 0, -1):
                print(f"  reading the fleet's counters: {left:3d} s left", file=sys.stderr,
                      end="\r", flush=True)
                await asyncio.sleep(min(1.0, window - (time.monotonic() - began)))
            print(file=sys.stderr)
            second = await fetch_stats(session, urls, token)
            seconds = time.monotonic() - began
        out = []
        for url, a, b in zip(urls, first, second, strict=True):
            if isinstance(a, Exception) or isinstance(b, Exception):
                if url in skippable:
                    print(f"wsops plan: left out {url} (in the registry, but: "
                          f"{a if isinstance(a, Exception) else b})", file=sys.stderr)
                    continue
                raise ValueError(f"{url}: {a if isinstance(a, Exception) else b}")
            out.append(observation_between(url, dict(a), dict(b), seconds))
        if not out:
            raise ValueError("no node of the fleet registry answered")
        return out

    return asyncio.run(run())


def observation_between(url: str, a: dict[str, Any], b: dict[str, Any],
                        seconds: float) -> dict[str, Any]:
    """What a node's ``/admin/stats`` at the start and the end of a window say of its costs."""
    if a.get("cpu_seconds") is None or b.get("cpu_seconds") is None:
        raise ValueError(f"{url}: no CPU figure (the node's runtime health is off)")
    if "operations" not in b or "hub" not in b:
        raise ValueError(f"{url}: not a bundled wsops node with its instrumentation on "
                         "(no publish and delivery counters)")

    def delta(group: str, key: str) -> float:
        return float((b.get(group) or {}).get(key, 0)) - float((a.get(group) or {}).get(key, 0))

    connections = (int(a.get("connections") or 0) + int(b.get("connections") or 0)) / 2
    return {"source": f"wsops plan --from-fleet {url} --window {seconds:.0f}",
            "seconds": seconds, "cpu_seconds": float(b["cpu_seconds"]) - float(a["cpu_seconds"]),
            "publishes": delta("operations", "published"),
            "deliveries": delta("hub", "deliveries"), "connections": connections,
            "rss_bytes_per_connection": b.get("memory_per_connection_bytes")}


def _finite(value: Any) -> Any:
    """JSON has no infinity: None instead (a wave that never ends, a saturated core)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _rate(n: float, unit: str) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def render(result: Plan, workload: Workload, profile: Profile) -> str:
    loss = result.loss
    lines = [
        f"workload: {workload.connections:,} connections, {workload.publish_rate:,.0f} "
        f"publishes/s, {workload.deliveries_per_publish:g} deliveries per publish "
        f"({_rate(result.delivery_rate, '/s')}), {workload.payload_bytes} B messages, "
        f"{workload.churn:,.0f} new connections/s",
        f"fleet: {result.nodes} nodes x {result.workers_per_node} workers "
        f"({result.cores_per_node} cores, {_gib(result.memory_per_node)} each), "
        f"{result.redis_shards} Redis shard(s)   [set by: {result.limited_by}]",
        f"per node: {result.connections_per_node:,.0f} connections "
        f"({result.connections_per_worker:,.0f} per worker), CPU "
        f"{result.cpu_cores_per_node:.2f} of {result.cores_per_node} cores "
        f"({result.worker_utilization:.0%} per worker), memory "
        f"{_gib(result.memory_needed_per_node)}, network out "
        f"{_rate(result.bytes_out_per_node * 8, 'bit/s')}, in "
        f"{_rate(result.bytes_in_per_node * 8, 'bit/s')}",
    ]
    if result.redis_shards:
        lines.append(f"per Redis shard: {result.redis_cpu_per_shard:.0%} of its core, "
                     f"{_rate(result.redis_bytes_per_shard * 8, 'bit/s')}")
    hop = f" + Redis hop {profile.broker_hop_p99_ms:.1f} ms" if result.nodes > 1 else ""
    lines.append(f"expected delivery p99: {result.delivery_p99_ms:.1f} ms "
                 f"(floor {profile.send_floor_p99_ms:g} ms{hop} + fan-out + queueing)")
    if loss.get("absorbed"):
        lines.append(f"losing a node: {loss['connections_moved']:,.0f} connections move, the "
                     f"others at {loss['worker_utilization_after']:.0%} per worker, reconnect "
                     f"wave: {loss['reconnect_wave_seconds']:.1f} s of the others' spare CPU")
    else:
        lines.append(f"losing a node is NOT absorbed ({loss.get('reason', 'no headroom')}): "
                     "plan with --spare")
    src = profile.source
    lines.append(f"profile: {src.get('command') or src.get('measured') or 'given'}"
                 + (f" ({src['date']}, {src['machine']})" if src.get("machine") else
                    f" ({src['date']})" if src.get("date") else ""))
    return "\n".join(lines)


def plan_command(
    connections: Annotated[int | None, typer.Option(
        "--connections", "-c", show_default=False,
        help="Connections open at the busiest time.")] = None,
    publish_rate: Annotated[float | None, typer.Option(
        "--publish-rate", show_default=False, help="Publishes per second, fleet-wide.")] = None,
    rooms: Annotated[str | None, typer.Option(help=ROOMS_HELP, show_default=False)] = None,
    payload: Annotated[int | None, typer.Option(
        help="Bytes of a message's data.", show_default=False)] = None,
    churn: Annotated[float | None, typer.Option(
        help="New connections per second at steady state (arrivals, reconnects).",
        show_default=False)] = None,
    workload_file: Annotated[Path | None, typer.Option(
        "--workload", show_default=False, metavar="FILE",
        help="JSON file with the workload (the options' names: connections, publish_rate, "
             "rooms, payload, churn); options given win.")] = None,
    cores: Annotated[int, typer.Option(help="Cores per node (a worker each).")] = 8,
    memory: Annotated[float, typer.Option(help="Memory per node, GiB.")] = 16.0,
    max_open_files: Annotated[int, typer.Option(
        help="Open files a process may hold (ulimit -n).")] = 20_000,
    profile_files: Annotated[list[Path] | None, typer.Option(
        "--profile", show_default=False, metavar="FILE",
        help="Cost profile(s) from 'wsops loadtest --profile' (repeatable: their "
             "observations are fitted together); default: the profile shipped with wsops, "
             "measured on a 2-core machine.")] = None,
    fleet: Annotated[list[str] | None, typer.Option(
        "--from-fleet", show_default=False, metavar="URL",
        help="Admin URL of a running node (repeatable): its costs are read from its counters "
             "over --window and fitted on the profile.")] = None,
    redis: Annotated[str | None, typer.Option(
        "--redis", show_default=False, metavar="URL",
        help="Read every node of the fleet registry in this Redis (the nodes' --broker URL), "
             "as --from-fleet does.")] = None,
    window: Annotated[float, typer.Option(
        help="Seconds to read --from-fleet and --redis nodes over.")] = 30.0,
    admin_token: Annotated[str | None, typer.Option(
        envvar=ADMIN_TOKEN_ENV, show_default=False,
        help="Admin token for --from-fleet and --redis nodes.")] = None,
    spare: Annotated[bool, typer.Option(
        help="Add nodes until the fleet survives losing its largest one.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The fleet a workload needs: nodes and workers, cores and memory per node, Redis shards,
    network, the expected delivery p99, and what losing a node does.

    From a cost profile measured by wsops itself (CPU per accepted connection, per publish,
    per delivery, per open connection; memory per connection); see README "Capacity
    planning" and BENCHMARKS.md for how far its predictions were off on measured runs.
    """
    try:
        given = workload_from_file(workload_file) if workload_file else {}
        for key, value in (("connections", connections), ("publish_rate", publish_rate),
                           ("rooms", rooms), ("payload", payload), ("churn", churn)):
            if value is not None:
                given[key] = value
        if "connections" not in given:
            raise ValueError("give --connections (or a --workload file with connections)")
        shapes = parse_rooms(str(given.get("rooms", "5")))
        workload = Workload(int(given["connections"]), float(given.get("publish_rate", 0)),
                            shapes, int(given.get("payload", 64)), float(given.get("churn", 0)))
        node = NodeSpec(cores=cores, memory_bytes=int(memory * GIB),
                        max_fds_per_process=max_open_files)
        named = list(dict.fromkeys(normalize_url(u) for u in fleet or []))
        listed = [u for u in _registry(redis) if u not in named] if redis else []
        profile, _ = profiles.load()
        files = [profiles.load(path) for path in profile_files or []]
        observations = [o for _, obs in files for o in obs]
        if named or listed:
            observations += from_fleet([*named, *listed], admin_token, window,
                                       skippable=set(listed))
        if len(files) == 1 and not (named or listed):
            profile = files[0][0]  # fitted when it was written
        elif observations:  # several runs (and the fleet's counters), fitted together
            profile = profiles.fit(profile, observations, measured=", ".join(
                str(o.get("source", "?")) for o in observations),
                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        result = plan(workload, profile, node, spare=spare)
    except ValueError as exc:
        typer.secho(f"wsops plan: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if json_out:
        typer.echo(json.dumps({"workload": {
            "connections": workload.connections, "publish_rate": workload.publish_rate,
            "rooms": [[r.subscribers, r.share] for r in workload.rooms],
            "payload": workload.payload_bytes, "churn": workload.churn},
            "node": {"cores": cores, "memory_gib": memory, "max_open_files": max_open_files},
            "profile": asdict(profile), "plan": _finite(result.as_dict())}, indent=2))
    else:
        typer.echo(render(result, workload, profile))
