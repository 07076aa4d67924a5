"""``wsops drain``: drain a live node through its admin API and follow it, or cancel a drain.

The node does the work (readiness 503, upgrades refused with HTTP 503, connections closed in
jittered batches, the rest force-closed at its deadline); this command starts it with
``POST /admin/drain``, shows ``GET /admin/drain`` as a progress bar and turns the end into an
exit code (``drainview.judge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any

import aiohttp
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from wsops.admin.apiclient import DOWN, AdminClient, AdminError
from wsops.admin.contract import DrainStatus
from wsops.instrumentation.drainer import DEFAULT_SPREAD
from wsops.ops.drainview import (
    EXIT_ERROR,
    EXIT_OK,
    GRACE_SECONDS,
    DrainOptions,
    DrainTimeline,
    Outcome,
    judge,
    progress,
    without_log,
)
from wsops.ops.fleetview import normalize_url
from wsops.ops.reports import drainreport, output
from wsops.ops.reports.output import ReportOption
from wsops.ops.status import TokenOption, registry_admin_urls

POLL_SECONDS = 0.2
POLL_FAILURES = 10  # consecutive unanswered polls before the command gives up on the node
PEER_POLL_SECONDS = 0.5
MAX_PEER_WATCH = 60.0  # seconds the peers are followed after the drain, at most
_STYLE = {EXIT_OK: "green", EXIT_ERROR: "red"}


def drain(
    admin_url: Annotated[str, typer.Argument(
        show_default=False, metavar="ADMIN_URL",
        help="Admin listener of the node: http://HOST:ADMIN_PORT (HOST:PORT means http).")],
    batch: Annotated[int | None, typer.Option(
        show_default=False,
        help="Connections closed per batch (default: the node's --drain-batch).")] = None,
    interval: Annotated[float | None, typer.Option(
        show_default=False, help="Seconds between batches, jittered x0.5-1.5 "
                                 "(default: the node's --drain-interval).")] = None,
    deadline: Annotated[float | None, typer.Option(
        show_default=False, help="Seconds after which the node force-closes what is left "
                                 "(default: the node's --drain-deadline).")] = None,
    code: Annotated[int | None, typer.Option(
        show_default=False, help="Close code sent to clients (default 1012, service restart: "
                                 "clients reconnect elsewhere).")] = None,
    spread: Annotated[float | None, typer.Option(
        show_default=False, help="Seconds over which each closed client is asked to spread "
                                 "its reconnect (a hint in the 1012 close that the wsops "
                                 "clients honour; 0 asks nothing; default: the node's "
                                 "--drain-spread).")] = None,
    cancel: Annotated[bool, typer.Option(
        "--cancel", help="Cancel a drain instead: readiness back to 200, connections "
                         "accepted again.")] = False,
    token: TokenOption = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="No progress bar; print the outcome and final drain status as JSON.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds each admin request may take.")] = 5.0,
    peer: Annotated[list[str] | None, typer.Option(
        show_default=False, metavar="ADMIN_URL",
        help="Another node's admin URL (repeatable): its connections are followed during the "
             "drain and for the reconnect spread after it, to see where the clients went "
             "(--json and --report).")] = None,
    redis: Annotated[str | None, typer.Option(
        "--redis", show_default=False,
        help="Follow every other node of the fleet registry in this Redis (the nodes' "
             "--broker URL), as --peer does.")] = None,
    report: ReportOption = None,
) -> None:
    """Drain a live node: readiness 503, new connections refused (HTTP 503), open ones closed
    with 1012 in batches; a progress bar follows the connections left until none are.

    Example: wsops drain http://127.0.0.1:9765 --batch 50 --interval 0.2 --deadline 20

    Undo (the node takes connections again): wsops drain http://127.0.0.1:9765 --cancel

    Exit codes: 0 drained (the node reports no connection left and none force-closed); 4
    timeout (connections were still open at the deadline, so the node force-closed them, or the
    node still reported draining 3 s past the deadline); 1 error (node unreachable, admin token
    missing or refused (401/403), drain cancelled meanwhile); 2 bad options. Ctrl-C stops
    following; the drain goes on.
    """
    try:
        url = normalize_url(admin_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="ADMIN_URL") from None
    opts = DrainOptions(batch, interval, deadline, code, spread)
    if cancel and opts.body():
        raise typer.BadParameter("takes no --batch/--interval/--deadline/--code/--spread",
                                 param_hint="--cancel")
    problems = opts.problems()
    if problems:
        name, problem = problems[0]
        raise typer.BadParameter(problem, param_hint=name)
    if timeout <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--timeout")
    if cancel and (peer or redis or report):
        raise typer.BadParameter("takes no --peer/--redis/--report", param_hint="--cancel")
    output.check_path(report)
    peers = _peers(url, peer, redis)
    if not json_out and report is None:
        peers = []  # (followed for --json and --report: nothing else shows them)
    made = {"command": output.command_line(), "versions": output.versions()}
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    details: dict[str, Any] = {}
    try:
        if cancel:
            outcome = asyncio.run(_cancel(url, token, timeout))
        else:
            outcome, details = asyncio.run(_drain(url, token, timeout, opts, err, json_out,
                                                  peers))
    except AdminError as exc:
        outcome = Outcome(EXIT_ERROR, "error", str(exc))
    except KeyboardInterrupt:
        err.print(f"stopped following; the drain goes on (undo: wsops drain {url} --cancel)")
        raise typer.Exit(130) from None
    if outcome.exit_code == EXIT_ERROR:
        where = "" if outcome.message.startswith(url) else f"{url}: "
        err.print(f"wsops drain: {where}{outcome.message}", style="red")
    elif not json_out:
        Console(highlight=False, soft_wrap=True).print(
            f"{url}: {outcome.message}", style=_STYLE.get(outcome.exit_code, "yellow"))
    data = {"node": url, "result": outcome.result, "exit_code": outcome.exit_code,
            "message": outcome.message, **details, **made}
    if json_out:
        typer.echo(json.dumps(data, indent=2, default=str))
    if report is not None:
        output.write(report, drainreport.render(json.loads(json.dumps(data, default=str))))
    raise typer.Exit(outcome.exit_code)


def _peers(url: str, given: list[str] | None, redis_url: str | None) -> list[str]:
    """The other nodes to follow: ``--peer`` URLs and the registry's admin URLs, without the
    drained node."""
    found = []
    for text in given or ():
        try:
            found.append(normalize_url(text))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--peer") from None
    for listed in registry_admin_urls(redis_url) if redis_url else ():
        with contextlib.suppress(ValueError):
            found.append(normalize_url(listed))
    return [u for u in dict.fromkeys(found) if u != url]


def _bar(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("draining {task.fields[node]}"), BarColumn(),
        TextColumn("{task.fields[left]} of {task.fields[all]} left"),
        TextColumn("· {task.fields[batches]} batches"), TimeElapsedColumn(),
        console=console, disable=not enabled,
    )


async def _ready(api: AdminClient) -> bool | None:
    try:
        return (await api.readiness())[0]
    except AdminError:
        return None


async def _watch_peers(apis: dict[str, AdminClient], seen: DrainTimeline, t0: float,
                       stop: asyncio.Event) -> None:
    """Every ``PEER_POLL_SECONDS`` until ``stop``: each peer's connections."""
    loop = asyncio.get_running_loop()
    while True:
        counts = await asyncio.gather(*(api.open_connections() for api in apis.values()))
        for peer_url, n in zip(apis, counts, strict=True):
            seen.peer(loop.time() - t0, peer_url, n)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PEER_POLL_SECONDS)
            return


async def _drain(url: str, token: str | None, patience: float, opts: DrainOptions,
                 err: Console, json_out: bool,
                 peers: list[str] | None = None) -> tuple[Outcome, dict[str, Any]]:
    loop = asyncio.get_running_loop()
    seen = DrainTimeline()
    async with aiohttp.ClientSession() as session:
        api = AdminClient(session, url, token, patience)
        before = await api.drain_status()  # fails early (and clearly) on auth or a wrong URL
        started_at = loop.time()
        apis = {p: AdminClient(session, p, token, patience) for p in peers or ()}
        stop_peers = asyncio.Event()
        watcher = asyncio.create_task(_watch_peers(apis, seen, started_at, stop_peers)) \
            if apis else None
        try:
            started = await api.start_drain(opts.body())
            following = not started.get("started", before.get("state") != "draining")
            if following:
                err.print(f"a drain is already running on {url}: following it (its own "
                          "options apply, not these)", style="yellow", highlight=False)
            options: dict[str, Any] | None = dict(started.get("options") or {}) or (
                None if following else opts.body())
            status, gave_up, received = await _follow(api, url, started, options, started_at,
                                                      seen, err, json_out)
            elapsed = loop.time() - started_at
            seen.node_log(status, received)
            if watcher is not None:
                # Drained clients reconnect over the spread the node asked of them: follow
                # the peers that long, so the report shows where they went.
                watch = min(MAX_PEER_WATCH,
                            float((options or {}).get("spread", DEFAULT_SPREAD)) + 1.0)
                if not json_out:
                    err.print(f"following {len(apis)} peer(s) for {watch:g} s more (the "
                              "clients' reconnect spread)")
                await asyncio.sleep(watch)
        finally:
            stop_peers.set()
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
    outcome = judge(status, gave_up=gave_up, elapsed=elapsed)
    return outcome, {"following": following, "options": options,
                     "elapsed_seconds": round(elapsed, 3),
                     "drain": without_log(status),
                     "deadline_seconds": (options or {}).get("deadline"),
                     **seen.as_dict(following)}


async def _follow(api: AdminClient, url: str, status: DrainStatus,
                  options: dict[str, Any] | None, started_at: float, seen: DrainTimeline,
                  err: Console, json_out: bool) -> tuple[DrainStatus, bool, float]:
    """Poll the drain until it ends; (its last status, whether the command gave up, when that
    status arrived, in seconds from ``started_at``)."""
    loop = asyncio.get_running_loop()
    deadline = (options or {}).get("deadline")
    # The node force-closes at its deadline and then reports "drained"; past the deadline
    # and a grace period the command stops waiting.
    give_up = None if deadline is None else started_at + float(deadline) + GRACE_SECONDS
    failures, settle = 0, None
    received = loop.time() - started_at
    with _bar(err, not json_out) as bar:
        task = bar.add_task("drain", node=url, left="?", all="?", batches=0, total=None)
        while True:
            seen.status(loop.time() - started_at, status, await _ready(api))
            total, left = progress(status)
            bar.update(task, total=max(total, 1), completed=max(total, 1) - left,
                       left=left, all=total, batches=status.get("batches", 0))
            state = status.get("state")
            if state == "drained":
                # Closing handshakes may still be finishing: give them the grace period.
                settle = settle or loop.time() + GRACE_SECONDS
                if not left or loop.time() >= settle:
                    return status, False, received
            elif state != "draining":
                return status, False, received
            elif give_up is not None and loop.time() >= give_up:
                return status, True, received
            await asyncio.sleep(POLL_SECONDS)
            try:
                asked = loop.time()
                status = await api.drain_status()
                received = (asked + loop.time()) / 2 - started_at  # the node answered about then
                failures = 0
            except AdminError as exc:
                failures += 1
                if exc.kind != DOWN or failures >= POLL_FAILURES:
                    raise


async def _cancel(url: str, token: str | None, patience: float) -> Outcome:
    async with aiohttp.ClientSession() as session:
        api = AdminClient(session, url, token, patience)
        answer = await api.cancel_drain()
        ready, reasons = await api.readiness()
    if answer.get("cancelled"):
        what = (f"drain cancelled ({answer.get('closed', 0)} of {answer.get('total', 0)} "
                "connections had been closed)")
    else:
        what = f"no drain was running (state {answer.get('state')})"
    if not ready:
        return Outcome(EXIT_ERROR, "error",
                       f"{what}, but the node is still not ready: {', '.join(reasons)}")
    return Outcome(EXIT_OK, "cancelled" if answer.get("cancelled") else "idle",
                   f"{what}; the node is ready and accepts connections again")
