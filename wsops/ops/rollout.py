"""``wsops rollout``: upgrade a fleet node by node, each one drained, replaced, and baked
under gates on what realtime users feel; a failed gate stops the rollout (and rolls back).

Per node: the rest of the fleet must have room for its connections; the node is drained
(readiness 503, 1012 closes with the reconnect hint); ``--restart CMD`` replaces it (or an
orchestrator does: ``--wait-replacement``); the rollout waits until the node answers ready as
a new process (another ``started_at``), gives clients ``--settle`` seconds to come back, then
bakes: every node of the fleet is read once a second for ``--bake`` seconds (``--canary-bake``
for the first node) and the gates are held over that window on each of them. The decisions
live in ``wsops.ops.rolloutplan``; this module talks to the nodes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import aiohttp
import typer

from wsops.admin.apiclient import AdminClient, AdminError
from wsops.ops.fleetview import targets
from wsops.ops.rolloutplan import (
    DEFAULT_GATES,
    METRICS,
    Gate,
    RolloutState,
    failed_gates,
    figures,
    headroom_problem,
    parse_gate,
    restart_command,
    show,
)
from wsops.ops.status import TokenOption

EXIT_OK, EXIT_FAILED, EXIT_BAD, EXIT_GATE = 0, 1, 2, 3
POLL = 0.5


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
    log: list[dict[str, Any]] = field(default_factory=list)

    def say(self, node: str, step: str, text: str, **extra: Any) -> None:
        self.log.append({"node": node, "step": step, "text": text, "at": time.time(), **extra})
        if not self.json_out:
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


async def _drain(plan: Plan, api: AdminClient, url: str) -> None:
    started: dict[str, Any] = dict(await api.start_drain({}))
    deadline = float((started.get("options") or {}).get("deadline", 30.0))
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline + 10.0
    while True:
        status = await api.drain_status()
        if status.get("state") == "drained" and not status.get("remaining"):
            plan.say(url, "drain", f"closed {status.get('closed', 0)}, forced "
                     f"{status.get('forced', 0)}", drain=dict(status))
            return
        if status.get("state") not in ("draining", "drained"):
            raise RolloutError(f"the drain ended as {status.get('state')!r} (cancelled?)")
        if loop.time() > give_up:
            raise RolloutError("the drain did not finish by its deadline")
        await asyncio.sleep(POLL)


async def _wait_new_process(plan: Plan, api: AdminClient, url: str, old_start: float) -> dict[
        str, Any]:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + plan.ready_timeout
    last = "no answer yet"
    while loop.time() < give_up:
        try:
            ready, reasons = await api.readiness()
            if ready:
                stats = await _stats(api)
                if float(stats.get("started_at", 0)) != old_start:
                    return stats
                last = "the old process still answers"
            else:
                last = f"not ready: {', '.join(reasons)}"
        except AdminError as exc:
            last = exc.message
        await asyncio.sleep(POLL)
    raise RolloutError(f"no new ready process within {plan.ready_timeout:g} s ({last})")


async def _bake(plan: Plan, apis: dict[str, AdminClient], url: str, seconds: float) -> None:
    samples: dict[str, list[dict[str, Any]]] = {u: [] for u in apis}
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        for u, api in apis.items():
            try:
                samples[u].append(await _stats(api))
            except AdminError as exc:
                raise GateFailed(f"{u} stopped answering during the bake: {exc.message}") from None
        if loop.time() >= end:
            break
        await asyncio.sleep(min(1.0, max(0.0, end - loop.time())))
    for u, taken in samples.items():
        values = figures(taken)
        failed = failed_gates(plan.gates, values)
        shown = ", ".join(f"{m} {show(m, values[m])}" for m in METRICS)
        if failed:
            raise GateFailed(f"on {u}: {'; '.join(failed)} ({shown})")
        plan.say(url, "bake", f"{u}: {shown}: every gate holds", node_figures=values, of=u)


async def _upgrade(plan: Plan, session: aiohttp.ClientSession, group: list[str],
                   canary: bool) -> None:
    """Drain, replace and bake the nodes of ``group`` together (one with ``--batch 1``)."""
    apis = {u: AdminClient(session, u, plan.token, plan.timeout) for u in plan.nodes}
    label = ", ".join(group)
    before = {u: await _stats(apis[u]) for u in group}
    if plan.headroom:
        others = [await _stats(apis[u]) for u in plan.nodes if u not in group]
        need = sum(int(b.get("connections", 0)) for b in before.values())
        problem = headroom_problem({"connections": need}, others)
        if problem is not None:
            raise RolloutError(problem)
    for url, b in before.items():
        plan.say(url, "drain", f"{b.get('connections', 0)} connections, version "
                 f"{b.get('version')}")
    await asyncio.gather(*(_drain(plan, apis[u], u) for u in group))
    for url, b in before.items():
        if plan.restart is not None:
            command = restart_command(plan.restart, url, str(b.get("node_id") or ""),
                                      _host(url))
            plan.say(url, "restart", command)
            await _run_command(command, plan.ready_timeout)
        else:
            plan.say(url, "restart", "waiting for the orchestrator to replace the node")
    afters = await asyncio.gather(*(_wait_new_process(
        plan, apis[u], u, float(before[u].get("started_at", 0))) for u in group))
    for url, after in zip(group, afters, strict=True):
        plan.say(url, "ready", f"version {after.get('version')}, started at "
                 f"{after.get('started_at')}")
    loop = asyncio.get_running_loop()
    settle_end = loop.time() + plan.settle
    for url in group:
        while loop.time() < settle_end and not (await _stats(apis[url])).get("connections"):  # noqa: ASYNC110 (polls a node)
            await asyncio.sleep(POLL)
    seconds = plan.canary_bake if canary else plan.bake
    plan.say(label, "bake", f"{seconds:g} s{' (canary)' if canary else ''}, gates: "
             f"{'; '.join(g.text for g in plan.gates)}")
    await _bake(plan, apis, label, seconds)


async def _roll_back(plan: Plan, session: aiohttp.ClientSession, url: str) -> None:
    """Run ``--rollback`` for ``url`` and wait for the process it starts to be ready."""
    assert plan.rollback is not None
    api = AdminClient(session, url, plan.token, plan.timeout)
    try:
        now: dict[str, Any] = await _stats(api)
    except AdminError:
        now = {}
    command = restart_command(plan.rollback, url, str(now.get("node_id") or ""), _host(url))
    plan.say(url, "rollback", command)
    try:
        await _run_command(command, plan.ready_timeout)
        after = await _wait_new_process(plan, api, url, float(now.get("started_at", 0)))
    except (RolloutError, AdminError) as failed:
        plan.say(url, "rollback", f"failed: {failed}")
        return
    plan.say(url, "rollback", f"ready: version {after.get('version')}, started at "
             f"{after.get('started_at')}")


async def _rollout(plan: Plan, state: RolloutState, state_file: Path | None) -> int:
    todo = state.todo()
    async with aiohttp.ClientSession() as session:
        for first in range(0, len(todo), plan.batch):
            group = todo[first:first + plan.batch]
            label = ", ".join(group)
            canary = not state.done
            try:
                await _upgrade(plan, session, group, canary)
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


def _nodes(urls: Sequence[str] | None, file: Path | None, redis_url: str | None) -> list[str]:
    found = list(urls or [])
    if file is not None:
        try:
            found += targets([], file.read_text(), None)
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {file}: {exc.strerror}",
                                     param_hint="--file") from None
    if redis_url:
        from wsops.server.broker.redis_fleet import list_nodes

        try:
            nodes = asyncio.run(list_nodes(redis_url))
        except Exception as exc:
            raise typer.BadParameter(f"cannot read the fleet registry: {exc}",
                                     param_hint="--redis") from None
        found += sorted(str(n["admin_url"]) for n in nodes if n.get("admin_url"))
    if not found:
        return []
    try:
        return list(dict.fromkeys(targets(found, None, None)))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="URL") from None


def rollout(
    urls: Annotated[list[str] | None, typer.Argument(
        show_default=False, metavar="ADMIN_URL",
        help="Admin listeners of the nodes, upgraded in this order.")] = None,
    redis: Annotated[str | None, typer.Option(
        "--redis", show_default=False,
        help="Take the nodes from the fleet registry in this Redis (the nodes' --broker "
             "URL), ordered by admin URL.")] = None,
    file: Annotated[Path | None, typer.Option(
        show_default=False, help="A file with one admin URL per line.")] = None,
    restart: Annotated[str | None, typer.Option(
        show_default=False, help="Shell command that replaces a drained node, with {admin_url}, "
        "{node_id} and {host} filled in (systemctl restart, a script); it must exit 0.")] = None,
    wait_replacement: Annotated[bool, typer.Option(
        "--wait-replacement", help="Run no command: wait for an orchestrator to replace the "
        "drained node (a new process answering on its admin URL).")] = False,
    rollback: Annotated[str | None, typer.Option(
        show_default=False, help="Shell command run for the node where the rollout stopped "
        "(same placeholders).")] = None,
    gate: Annotated[list[str] | None, typer.Option(
        show_default=False, help="A gate, 'NAME < VALUE' with ms, s or %, held on every node "
        "during a "
        f"bake (repeatable; figures: {', '.join(METRICS)}). Default: "
        f"{'; '.join(DEFAULT_GATES)}.")] = None,
    bake: Annotated[float, typer.Option(help="Seconds each upgraded node is watched.")] = 30.0,
    canary_bake: Annotated[float | None, typer.Option(
        show_default=False, help="Seconds the first node is watched (default: twice --bake).")
    ] = None,
    settle: Annotated[float, typer.Option(
        help="Seconds given to clients to come back to a replaced node before its bake.")
    ] = 10.0,
    ready_timeout: Annotated[float, typer.Option(
        help="Seconds a restart command and a replaced node may take to be ready.")] = 120.0,
    batch: Annotated[int, typer.Option(
        help="Nodes drained, replaced and baked together (the first batch is the canary).")
    ] = 1,
    no_headroom_check: Annotated[bool, typer.Option(
        "--no-headroom-check", help="Upgrade even when the other nodes have no room for a "
        "node's connections.")] = False,
    state_file: Annotated[Path | None, typer.Option(
        "--state", show_default=False, help="Save progress here after every node.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the rollout saved in --state (its nodes, skipping those "
        "done).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and exit.")] = False,
    token: TokenOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds each admin request may take.")] = 5.0,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the steps and the outcome as JSON at the end.")] = False,
) -> None:
    """Upgrade a fleet node by node: drain, replace, bake under gates.

    Example: wsops rollout --redis redis://10.0.0.5:6379/0 --restart 'ssh {host} restart-wsops'

    Each node: the others must have room for its connections; it is drained; --restart
    replaces it; once a new process answers ready and clients had --settle seconds to come
    back, every node is watched for --bake seconds (--canary-bake for the first) and each gate
    must hold on each of them. A failed gate stops the rollout and runs --rollback.

    Exit codes: 0 every node upgraded; 3 a gate failed; 1 a step failed (drain, restart, a node
    not ready in time); 2 bad options.
    """
    if restart is None and not wait_replacement and not dry_run:
        raise typer.BadParameter("say how a node is replaced: --restart 'CMD' or "
                                 "--wait-replacement", param_hint="--restart")
    if batch < 1:
        raise typer.BadParameter("must be >= 1", param_hint="--batch")
    if restart is not None and wait_replacement:
        raise typer.BadParameter("--restart or --wait-replacement, not both",
                                 param_hint="--restart")
    try:
        gates = [parse_gate(g) for g in (gate or DEFAULT_GATES)]
        for template in (restart, rollback):
            if template is not None:
                restart_command(template, "http://h:1", "n", "h")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if resume:
        if state_file is None:
            raise typer.BadParameter("--resume needs --state FILE", param_hint="--resume")
        try:
            state = RolloutState.load(state_file)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--state") from None
        state.failed = state.reason = None
    else:
        nodes = _nodes(urls, file, redis)
        if not nodes:
            raise typer.BadParameter("no node: give admin URLs, --file or --redis",
                                     param_hint="ADMIN_URL")
        state = RolloutState(nodes)
    plan = Plan(state.nodes, restart, rollback, gates, bake,
                canary_bake if canary_bake is not None else 2 * bake, settle, ready_timeout,
                not no_headroom_check, batch, token, timeout, json_out)
    if dry_run:
        todo = state.todo()
        for i, first in enumerate(range(0, len(todo), batch)):
            group = ", ".join(todo[first:first + batch])
            typer.echo(f"{i + 1}. {group}: drain, "
                       f"{'restart' if restart else 'wait for the replacement'}, bake "
                       f"{plan.canary_bake if i == 0 and not state.done else bake:g} s")
        typer.echo(f"gates: {'; '.join(g.text for g in gates)}")
        return
    code = asyncio.run(_rollout(plan, state, state_file))
    if json_out:
        json.dump({"result": "upgraded" if code == EXIT_OK else "stopped", "exit_code": code,
                   "done": state.done, "failed": state.failed, "reason": state.reason,
                   "steps": plan.log}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif code == EXIT_OK:
        typer.echo(f"upgraded {len(state.done)} nodes")
    else:
        typer.echo(f"stopped at {state.failed}: {state.reason}", err=True)
    raise typer.Exit(code)
