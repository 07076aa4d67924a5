"""``wsops rollout``: upgrade a fleet node by node, each one drained, replaced, and baked
under gates on what realtime users feel; a failed gate stops the rollout (and rolls back).

This module is the command line (the fleet, the options, the outcome); the steps are in
``wsops.ops.rolloutrun``, the decisions in ``wsops.ops.rolloutplan``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from wsops.ops.fleetview import targets
from wsops.ops.reports import output, rolloutreport
from wsops.ops.reports.output import ReportOption
from wsops.ops.rolloutplan import (
    DEFAULT_GATES,
    METRICS,
    RolloutState,
    parse_gate,
    restart_command,
)
from wsops.ops.rolloutrun import EXIT_OK, Plan, run_rollout
from wsops.ops.status import TokenOption, registry_admin_urls


def _nodes(urls: Sequence[str] | None, file: Path | None, redis_url: str | None) -> list[str]:
    found = list(urls or [])
    if file is not None:
        try:
            found += targets([], file.read_text(), None)
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {file}: {exc.strerror}",
                                     param_hint="--file") from None
    if redis_url:
        found += registry_admin_urls(redis_url)
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
             "URL), ordered by admin URL; a replacement that registers at another address (a "
             "Deployment's new pod) is followed there.")] = None,
    file: Annotated[Path | None, typer.Option(
        show_default=False, help="A file with one admin URL per line.")] = None,
    restart: Annotated[str | None, typer.Option(
        show_default=False, help="Shell command that replaces a drained node, with {admin_url}, "
        "{node_id} and {host} filled in (systemctl restart, a script); it must exit 0.")] = None,
    wait_replacement: Annotated[bool, typer.Option(
        "--wait-replacement", help="Run no command: wait for an orchestrator to replace the "
        "drained node (a new process answering on its admin URL, or with --redis a new node "
        "of the registry).")] = False,
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
    accept_rate: Annotated[float, typer.Option(
        help="Connections per second one node accepts without falling behind (BENCHMARKS.md: "
        "~2,000/s on 2 cores): a drain's reconnect window is widened so that the ready nodes "
        "left take its clients back at this rate.")] = 1000.0,
    prometheus: Annotated[str | None, typer.Option(
        show_default=False, help="Read the gate figures from this Prometheus (PromQL over the "
        "bake's window, per instance = the node's admin listener) instead of the admin API.")
    ] = None,
    prometheus_selector: Annotated[str, typer.Option(
        help="Label matchers the Prometheus queries add (the scrape job of the nodes).")
    ] = 'job="wsops"',
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
    report: ReportOption = None,
) -> None:
    """Upgrade a fleet node by node: drain, replace, bake under gates.

    Example: wsops rollout --redis redis://10.0.0.5:6379/0 --restart 'ssh {host} restart-wsops'

    Each node: the others must have room for its connections; it is drained, its clients
    told to spread their reconnects over a window wide enough for the others to take them
    back (--accept-rate); --restart replaces it; once a new process answers ready, clients
    had --settle seconds to come back and the reconnect window has passed, every node is
    watched for --bake seconds (--canary-bake for the first) and each gate must hold on each
    of them (figures from the admin API, or from --prometheus). A failed gate stops the
    rollout and runs --rollback.

    Exit codes: 0 every node upgraded; 3 a gate failed; 1 a step failed (drain, restart, a node
    not ready in time); 2 bad options.
    """
    if restart is None and not wait_replacement and not dry_run:
        raise typer.BadParameter("say how a node is replaced: --restart 'CMD' or "
                                 "--wait-replacement", param_hint="--restart")
    if batch < 1:
        raise typer.BadParameter("must be >= 1", param_hint="--batch")
    if accept_rate <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--accept-rate")
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
    if dry_run and report is not None:
        raise typer.BadParameter("a dry run does nothing to report", param_hint="--report")
    output.check_path(report)
    made = {"command": output.command_line(), "versions": output.versions()}
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
                not no_headroom_check, batch, token, timeout, json_out, accept_rate,
                prometheus, prometheus_selector, redis)
    if dry_run:
        todo = state.todo()
        for i, first in enumerate(range(0, len(todo), batch)):
            group = ", ".join(todo[first:first + batch])
            typer.echo(f"{i + 1}. {group}: drain, "
                       f"{'restart' if restart else 'wait for the replacement'}, bake "
                       f"{plan.canary_bake if i == 0 and not state.done else bake:g} s")
        typer.echo(f"gates: {'; '.join(g.text for g in gates)} (read from "
                   f"{'Prometheus at ' + prometheus if prometheus else 'the admin API'})")
        return
    started_at = time.time()
    code = asyncio.run(run_rollout(plan, state, state_file))
    data = {"result": "upgraded" if code == EXIT_OK else "stopped", "exit_code": code,
            "done": state.done, "failed": state.failed, "reason": state.reason,
            "steps": plan.log, "started_at": started_at, "nodes": state.nodes,
            "gates": [g.text for g in gates],
            "connections": [{"url": url, "t": [round(t - started_at, 2) for t, _ in seen],
                             "connections": [n for _, n in seen]}
                            for url, seen in plan.watched.items()], **made}
    if json_out:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif code == EXIT_OK:
        typer.echo(f"upgraded {len(state.done)} nodes")
    else:
        typer.echo(f"stopped at {state.failed}: {state.reason}", err=True)
    if report is not None:
        output.write(report, rolloutreport.render(data))
    raise typer.Exit(code)
