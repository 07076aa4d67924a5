"""``wsops debug``: turn a node's debug switch on for one user, room or connection, list what is
watched, or turn it off (``/admin/debug``). The node does the work; this command says what it
turned on, for how long, where to look, and how to undo it."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Annotated, Any

import aiohttp
import typer
from rich.console import Console

from wsops.admin.apiclient import AdminClient, AdminError
from wsops.admin.contract import DEBUG_MAX_SECONDS, DebugState, DebugTarget
from wsops.ops.fleetview import normalize_url
from wsops.ops.status import TokenOption

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(text: str) -> float:
    """Seconds in ``10m``, ``90s``, ``1h30m``, ``45`` (seconds); ValueError if it is none."""
    m = _DURATION.fullmatch(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration: use e.g. 30s, 10m, 1h, 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return hours * 3600 + minutes * 60 + seconds


def named_target(user: str | None, room: str | None, connection: str | None) -> dict[str, str]:
    """``{kind: value}`` of the --user/--room/--connection given (none: {}); two: exit 2."""
    given = {k: v for k, v in (("user", user), ("room", room), ("connection", connection))
             if v is not None}
    if len(given) > 1:
        raise typer.BadParameter("give one of --user, --room, --connection")
    return given


def _fmt(seconds: float) -> str:
    seconds = round(seconds)
    return (f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600
            else f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s")


def debug(
    admin_url: Annotated[str, typer.Argument(
        show_default=False, metavar="ADMIN_URL",
        help="Admin listener of the node: http://HOST:ADMIN_PORT (HOST:PORT means http).")],
    user: Annotated[str | None, typer.Option(
        show_default=False, help="Watch this user (the token's sub): every connection.")] = None,
    room: Annotated[str | None, typer.Option(
        show_default=False, help="Watch this room: every request about it.")] = None,
    connection: Annotated[str | None, typer.Option(
        show_default=False, help="Watch one connection, by the node's connection id.")] = None,
    for_: Annotated[str, typer.Option(
        "--for", help="How long the switch stays on (30s, 10m, 1h; at most 1h); it turns "
                      "itself off.")] = "10m",
    off: Annotated[bool, typer.Option(
        "--off", help="Turn the switch off for the target given (no target: for all).")
    ] = False,
    list_: Annotated[bool, typer.Option("--list", help="Show what is watched now.")] = False,
    token: TokenOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the node's answer as JSON.")
                        ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds each admin request may take.")] = 5.0,
) -> None:
    """Debug one user, room or connection on a live node for a bounded time: its frames are
    logged at DEBUG (logger wsops.debug, both ways for a user or a connection) and its
    publishes traced whatever the sample ratio (publish and deliver spans, exported over the
    node's OTLP endpoint). The switch turns itself off after --for.

    Example: wsops debug http://127.0.0.1:9765 --user alice --for 10m

    Also: wsops debug URL --list; wsops debug URL --off --user alice; wsops debug URL --off
    (everything). Exit codes: 0 done; 1 the node refused or could not be reached (the reason
    is printed); 2 bad options.
    """
    try:
        url = normalize_url(admin_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="ADMIN_URL") from None
    given = named_target(user, room, connection)
    if list_ and (given or off):
        raise typer.BadParameter("takes no target and no --off", param_hint="--list")
    if not list_ and not off and not given:
        raise typer.BadParameter("give --user, --room or --connection (or --list, --off)")
    try:
        seconds = parse_duration(for_)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--for") from None
    if not 0 < seconds <= DEBUG_MAX_SECONDS:
        raise typer.BadParameter(f"must be more than 0 and at most {_fmt(DEBUG_MAX_SECONDS)}",
                                 param_hint="--for")
    if timeout <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--timeout")
    target_id = next((f"{k}:{v}" for k, v in given.items()), None)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        answer = asyncio.run(_call(url, token, timeout, list_, off, given, target_id, seconds))
    except AdminError as exc:
        err.print(f"wsops debug: {exc}", style="red")
        raise typer.Exit(1) from None
    if json_out:
        typer.echo(json.dumps({"node": url, **answer}, indent=2))
        return
    out = Console(highlight=False, soft_wrap=True)
    for line in _describe(url, answer, off, target_id):
        out.print(line)


async def _call(url: str, token: str | None, patience: float, list_: bool, off: bool,
                given: dict[str, str], target_id: str | None, seconds: float) -> Any:
    async with aiohttp.ClientSession() as session:
        api = AdminClient(session, url, token, patience)
        if list_:
            return await api.debug_state()
        if off:
            return await api.debug_stop(target_id)
        return await api.debug_start({**given, "seconds": seconds})


def _target_line(t: DebugTarget) -> str:
    return f"  {t['id']}: {_fmt(t['seconds_left'])} left"


def _describe(url: str, answer: Any, off: bool, target_id: str | None) -> list[str]:
    state: DebugState = answer
    lines: list[str] = []
    if "target" in answer:
        t: DebugTarget = answer["target"]
        until = time.strftime("%H:%M:%S", time.localtime(time.time() + t["seconds_left"]))
        lines.append(f"{url}: watching {t['id']} until {until} ({_fmt(t['seconds_left'])}).")
        lines.append(f"  Frames: logged at DEBUG by the node's logger {state['logger']!r}.")
        lines.append("  Publishes: traced whatever the sample ratio (publish and deliver spans)."
                     if state["traced"] else
                     "  Publishes: not traced: the node exports no spans (no OTLP endpoint, "
                     "or --no-tracing); frames are logged only.")
        lines.append(f"  Off now: wsops debug {url} --off --{t['kind']} {t['value']}")
        return lines
    if off:
        stopped = answer.get("stopped", [])
        lines.append(f"{url}: turned off {', '.join(stopped)}." if stopped else
                     f"{url}: {target_id or 'nothing'} was not on; nothing to turn off.")
    if state["targets"]:
        lines.append(f"{url}: watching {len(state['targets'])}:")
        lines.extend(_target_line(t) for t in state["targets"])
    elif not off:
        lines.append(f"{url}: the debug switch is off.")
    return lines
