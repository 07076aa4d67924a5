"""``wsops rollout``'s steps against the nodes: drain, replace, wait, bake, roll back.

Per group of nodes (one with ``--batch 1``): the rest of the fleet must have room for its
connections; it is drained (readiness 503, 1012 closes whose reconnect window is widened
until the ready nodes left can take the clients back at ``--accept-rate`` each); ``--restart``
replaces it (or an orchestrator does: ``--wait-replacement``); the rollout waits until the
node answers ready as a new process (another ``started_at``), gives clients ``--settle``
seconds to come back and lets the reconnect window pass, then bakes: every node of the fleet
is read once a second for ``--bake`` seconds and the gates are held on each of them, with
figures from the admin API or from Prometheus (``wsops.ops.promgates``). The decisions live
in ``wsops.ops.rolloutplan``; the command line in ``wsops.ops.rollout``.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import typer

from wsops.admin.apiclient import AdminClient, AdminError
from wsops.ops.drainview import without_log
from wsops.ops.promgates import PrometheusError, PromGates
from wsops.ops.rolloutplan import (
    METRICS,
    Gate,
    RolloutState,
    drain_spread,
    failed_gates,
    figures,
    headroom_problem,
    restart_command,
    show,
)

EXIT_OK, EXIT_FAILED, EXIT_BAD, EXIT_GATE = 0, 1, 2, 3
POLL = 0.5
PROGRESS_EVERY = 5.0  # seconds between progress lines of a drain or a bake
DEFAULT_NODE_SPREAD = 5.0  # wsops serve --drain-spread's default (a node that does not say)
WATCH_EVERY = 1.0  # seconds between readings of every node's connections (for --report)
WATCH_POINTS = 2000  # readings kept per node: past it, every other one is dropped


class RolloutError(Exception):
    """A step that could not be done; the rollout stops (exit 1)."""


class GateFailed(Exception):
    """A gate failed during a bake; the rollout stops (exit 3)."""


@dataclass
class Plan:
    nodes: list[str]
    restart: str | None
    rollback: str | None
    gates: list[Gate]
    bake: float
    canary_bake: float
    settle: float
    ready_timeout: float
    headroom: bool
    batch: int
    token: str | None
    timeout: float
    json_out: bool
    accept_rate: float = 1000.0
    prometheus: str | None = None
    selector: str = 'job="wsops"'
    redis: str | None = None  # the registry: replacements at new addresses are followed
    log: list[dict[str, Any]] = field(default_factory=list)
    # Every node's connections through the rollout: (wall-clock time, connections or None).
    watched: dict[str, list[tuple[float, int | None]]] = field(default_factory=dict)
    proms: PromGates | None = None
    claimed: set[str] = field(default_factory=set)  # new addresses taken as replacements
    moved: dict[str, str] = field(default_factory=dict)  # old admin URL -> its replacement's

    def follow(self, old: str, new: str) -> None:
        """The node at ``old`` now answers at ``new``: watched (and counted done) there."""
        self.moved[old] = new
        self.nodes[self.nodes.index(old)] = new

    def say(self, node: str, step: str, text: str, **extra: Any) -> None:
        self.log.append({"node": node, "step": step, "text": text, "at": time.time(), **extra})
        if not self.json_out:
            typer.echo(f"{node}: {step}: {text}", err=True)

    def progress(self, node: str, step: str, text: str) -> None:
        """A line of a long step (a drain, a bake), on stderr only: not in the log."""
        typer.echo(f"{node}: {step}: {text}", err=True)


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


async def _stats(api: AdminClient) -> dict[str, Any]:
    return dict(await api.stats())


async def _run_command(command: str, timeout: float) -> None:  # noqa: ASYNC109
    proc = await asyncio.create_subprocess_shell(command, stdin=subprocess.DEVNULL)
    try:
        code = await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        raise RolloutError(f"{command!r} still running after {timeout:g} s") from None
    if code != 0:
        raise RolloutError(f"{command!r} exited {code}")


async def _drain(plan: Plan, api: AdminClient, url: str, spread: float | None) -> float:
    """Drain the node (with a reconnect window of ``spread`` seconds, or the node's own);
    returns the window its clients were given."""
    started: dict[str, Any] = dict(await api.start_drain(
        {} if spread is None else {"spread": spread}))
    options = started.get("options") or {}
    deadline = float(options.get("deadline", 30.0))
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline + 10.0
    shown = loop.time()
    while True:
        status = await api.drain_status()
        if status.get("state") == "drained" and not status.get("remaining"):
            plan.say(url, "drain", f"closed {status.get('closed', 0)}, forced "
                     f"{status.get('forced', 0)}", drain=without_log(status))
            return float(options.get("spread", spread or 0.0))
        if status.get("state") not in ("draining", "drained"):
            raise RolloutError(f"the drain ended as {status.get('state')!r} (cancelled?)")
        if loop.time() > give_up:
            raise RolloutError("the drain did not finish by its deadline")
        if loop.time() - shown >= PROGRESS_EVERY:
            shown = loop.time()
            plan.progress(url, "drain", f"{status.get('remaining', 0)} connections left, "
                          f"{status.get('closed', 0)} closed")
        await asyncio.sleep(POLL)


async def _newcomer(plan: Plan, session: aiohttp.ClientSession) -> tuple[str, dict[
        str, Any]] | None:
    """A ready node of the registry that the rollout does not know (a replacement at a new
    address: a Deployment's new pod), claimed so that no other replacement takes it too."""
    assert plan.redis is not None
    from wsops.server.broker.redis_fleet import list_nodes

    try:
        nodes = await list_nodes(plan.redis, plan.timeout)
    except Exception:  # the registry out of reach: the same URL may still answer
        return None
    for node in sorted(nodes, key=lambda n: float(n.get("started_at") or 0)):
        url = str(node.get("admin_url") or "")
        if not url or url in plan.nodes or url in plan.claimed or node.get("draining"):
            continue
        api = AdminClient(session, url, plan.token, plan.timeout)
        try:
            ready, _ = await api.readiness()
            if ready:
                plan.claimed.add(url)
                return url, await _stats(api)
        except AdminError:
            continue
    return None


async def _wait_new_process(plan: Plan, session: aiohttp.ClientSession, url: str,
                            old_start: float) -> tuple[str, dict[str, Any]]:
    """The ready process that replaced the node at ``url``: a new one on the same admin URL
    (another ``started_at``), or with ``--redis`` a new node of the registry at another."""
    api = AdminClient(session, url, plan.token, plan.timeout)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + plan.ready_timeout
    last = "no answer yet"
    while loop.time() < give_up:
        try:
            ready, reasons = await api.readiness()
            if ready:
                stats = await _stats(api)
                if float(stats.get("started_at", 0)) != old_start:
                    return url, stats
                last = "the old process still answers"
            else:
                last = f"not ready: {', '.join(reasons)}"
        except AdminError as exc:
            last = exc.message
        if plan.redis is not None and (found := await _newcomer(plan, session)) is not None:
            return found
        await asyncio.sleep(POLL)
    where = " or as a new node of the registry" if plan.redis is not None else ""
    raise RolloutError(f"no new ready process within {plan.ready_timeout:g} s at {url}{where} "
                       f"({last})")


async def _bake(plan: Plan, apis: dict[str, AdminClient], url: str, seconds: float) -> None:
    """Watch every node for ``seconds``; each gate must hold on each (GateFailed if not)."""
    samples: dict[str, list[dict[str, Any]]] = {u: [] for u in apis}
    loop = asyncio.get_running_loop()
    start = shown = loop.time()
    end = start + seconds
    while True:
        for u, api in apis.items():
            try:
                sample = await _stats(api)
            except AdminError as exc:
                raise GateFailed(f"{u} stopped answering during the bake: {exc.message}") from None
            sample["sampled_at"] = loop.time()
            samples[u].append(sample)
        if loop.time() >= end:
            break
        if loop.time() - shown >= PROGRESS_EVERY:
            shown = loop.time()
            p99, worst = max((figures(samples[u])["delivery_p99"], u) for u in apis)
            plan.progress(url, "bake", f"{loop.time() - start:.0f} of {seconds:g} s, worst "
                          f"delivery_p99 {show('delivery_p99', p99)} on {worst}")
        await asyncio.sleep(min(1.0, max(0.0, end - loop.time())))
    if plan.proms is not None:
        try:
            read = await plan.proms.figures(list(apis), seconds)
        except PrometheusError as exc:
            raise RolloutError(f"cannot read the gates from Prometheus: {exc}") from None
        source = "prometheus"
    else:
        read, source = {u: figures(taken) for u, taken in samples.items()}, "admin"
    for u, values in read.items():
        failed = failed_gates(plan.gates, values)
        told = ", ".join(f"{m} {show(m, values[m])}" for m in METRICS)
        if failed:
            raise GateFailed(f"on {u}: {'; '.join(failed)} ({told}; from {source})")
        plan.say(url, "bake", f"{u}: {told}: every gate holds", node_figures=values, of=u,
                 source=source)


async def _upgrade(plan: Plan, session: aiohttp.ClientSession, group: list[str],
                   canary: bool) -> list[str]:
    """Drain, replace and bake the nodes of ``group`` together (one with ``--batch 1``);
    returns their admin URLs now (another where a replacement came up elsewhere)."""
    apis = {u: AdminClient(session, u, plan.token, plan.timeout) for u in plan.nodes}
    label = ", ".join(group)
    before = {u: await _stats(apis[u]) for u in group}
    others = [await _stats(apis[u]) for u in plan.nodes if u not in group]
    if plan.headroom:
        need = sum(int(b.get("connections", 0)) for b in before.values())
        problem = headroom_problem({"connections": need}, others)
        if problem is not None:
            raise RolloutError(problem)
    ready_others = sum(1 for o in others if o.get("ready", False))
    spreads: dict[str, float | None] = {}
    for url, b in before.items():
        conns = int(b.get("connections", 0))
        own = b.get("drain_defaults")  # absent on a node of an earlier version
        spreads[url] = spread = drain_spread(
            conns, ready_others, plan.accept_rate,
            float(own["spread"]) if isinstance(own, dict) else DEFAULT_NODE_SPREAD)
        if spread is not None and not isinstance(own, dict):
            spreads[url] = None  # it would refuse the field: its own window stands
        window = (f"reconnect window widened to {spread:g} s for "
                  f"{ready_others} nodes at {plan.accept_rate:g} accepts/s each"
                  if spreads[url] is not None else "its own reconnect window")
        plan.say(url, "drain", f"{conns} connections, version {b.get('version')}, {window}")
    windows = await asyncio.gather(*(_drain(plan, apis[u], u, spreads[u]) for u in group))
    calm_at = asyncio.get_running_loop().time() + max(windows, default=0.0)
    for url, b in before.items():
        if plan.restart is not None:
            command = restart_command(plan.restart, url, str(b.get("node_id") or ""),
                                      _host(url))
            plan.say(url, "restart", command)
            await _run_command(command, plan.ready_timeout)
        else:
            plan.say(url, "restart", "waiting for the orchestrator to replace the node")
    afters = await asyncio.gather(*(_wait_new_process(
        plan, session, u, float(before[u].get("started_at", 0))) for u in group))
    for url, (now, after) in zip(group, afters, strict=True):
        where = ""
        if now != url:
            plan.follow(url, now)
            apis.pop(url)
            apis[now] = AdminClient(session, now, plan.token, plan.timeout)
            where = f", replaced by {now} ({after.get('node_id')})"
        plan.say(url, "ready", f"version {after.get('version')}, started at "
                 f"{after.get('started_at')}{where}")
    group = [now for now, _ in afters]
    loop = asyncio.get_running_loop()
    settle_end = loop.time() + plan.settle
    for url in group:
        while loop.time() < settle_end and not (await _stats(apis[url])).get("connections"):  # noqa: ASYNC110 (polls a node)
            await asyncio.sleep(POLL)
    if loop.time() < calm_at:  # the drained clients may still be coming back: not in the bake
        await asyncio.sleep(calm_at - loop.time())
    seconds = plan.canary_bake if canary else plan.bake
    plan.say(label, "bake", f"{seconds:g} s{' (canary)' if canary else ''}, gates: "
             f"{'; '.join(g.text for g in plan.gates)}")
    await _bake(plan, apis, label, seconds)
    return group


async def _roll_back(plan: Plan, session: aiohttp.ClientSession, url: str) -> None:
    """Run ``--rollback`` for ``url`` and wait for the process it starts to be ready."""
    assert plan.rollback is not None
    url = plan.moved.get(url, url)
    api = AdminClient(session, url, plan.token, plan.timeout)
    try:
        now: dict[str, Any] = await _stats(api)
    except AdminError:
        now = {}
    command = restart_command(plan.rollback, url, str(now.get("node_id") or ""), _host(url))
    plan.say(url, "rollback", command)
    try:
        await _run_command(command, plan.ready_timeout)
        at, after = await _wait_new_process(plan, session, url, float(now.get("started_at", 0)))
    except (RolloutError, AdminError) as failed:
        plan.say(url, "rollback", f"failed: {failed}")
        return
    if at != url:
        plan.follow(url, at)
    plan.say(url, "rollback", f"ready: version {after.get('version')}, started at "
             f"{after.get('started_at')}{f', at {at}' if at != url else ''}")


async def _watch(plan: Plan, session: aiohttp.ClientSession) -> None:
    """Read every node's connections each ``WATCH_EVERY`` s (the nodes as they are now:
    a replacement at a new address gets its own series), until cancelled."""
    apis: dict[str, AdminClient] = {}

    def one(url: str) -> Awaitable[int | None]:
        return apis.setdefault(url, AdminClient(session, url, plan.token,
                                                plan.timeout)).open_connections()

    while True:
        nodes = list(dict.fromkeys(plan.nodes))
        counts = await asyncio.gather(*(one(u) for u in nodes))
        now = time.time()
        for url, n in zip(nodes, counts, strict=True):
            seen = plan.watched.setdefault(url, [])
            seen.append((now, n))
            if len(seen) > WATCH_POINTS:
                del seen[1::2]
        await asyncio.sleep(WATCH_EVERY)


async def run_rollout(plan: Plan, state: RolloutState, state_file: Path | None) -> int:
    async with aiohttp.ClientSession() as session:
        watcher = asyncio.create_task(_watch(plan, session))
        try:
            return await _run(plan, state, state_file, session)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


async def _run(plan: Plan, state: RolloutState, state_file: Path | None,
               session: aiohttp.ClientSession) -> int:
    todo = state.todo()
    if plan.prometheus is not None:
        plan.proms = PromGates(session, plan.prometheus, plan.selector, plan.timeout)
        try:
            await plan.proms.check(plan.nodes)
        except PrometheusError as exc:
            plan.say("-", "stop", f"failed: {exc}")
            state.failed, state.reason = "-", f"failed: {exc}"
            return EXIT_FAILED
    for first in range(0, len(todo), plan.batch):
        group = todo[first:first + plan.batch]
        label = ", ".join(group)
        canary = not state.done
        try:
            group = await _upgrade(plan, session, group, canary)
        except (RolloutError, GateFailed, AdminError, ValueError) as exc:
            gate = isinstance(exc, GateFailed)
            reason = f"{'gate failed' if gate else 'failed'}: {exc}"
            plan.say(label, "stop", reason)
            state.failed, state.reason = label, reason
            if state_file is not None:
                state.save(state_file)
            if plan.rollback is not None:
                for url in group:
                    await _roll_back(plan, session, url)
            return EXIT_GATE if gate else EXIT_FAILED
        state.done.extend(group)
        if state_file is not None:
            state.save(state_file)
        plan.say(label, "done", f"{len(state.done)} of {len(state.nodes)} nodes upgraded")
    return EXIT_OK
