"""``wsops tap``: watch one room's, user's or connection's messages and control events live,
from a node's admin API (``GET /admin/tap``): what a client sent, what the node wrote to it,
each message fanned out in a room, connections opening and closing. The node caps the rate
and counts what it dropped; payloads stay on the node unless ``--payloads``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import aiohttp
import typer
from rich.console import Console
from rich.markup import escape

from wsops.admin.apiclient import AdminError, refusal
from wsops.admin.contract import TAP_MAX_RATE
from wsops.ops.debug import named_target, parse_duration
from wsops.ops.fleetview import normalize_url
from wsops.ops.status import TokenOption


def describe(e: dict[str, Any]) -> str | None:
    """One event as a line for people; None for a line that says nothing new."""
    stamp = time.strftime("%H:%M:%S", time.localtime(e.get("t", time.time())))
    stamp += f".{int(e.get('t', 0) * 1000) % 1000:03d}"
    who = f"conn {e.get('conn')} {e.get('user')}"
    size = f"({e.get('bytes', 0)} B)"
    kind = e.get("event")
    if kind == "request":
        line = f"{stamp}  {who} -> {e.get('op')} {e.get('room') or ''} {size}"
    elif kind == "out":
        what = e.get("op") or "frame"
        if what == "message":
            what += f" {e.get('room')} #{e.get('offset')}"
        elif what == "reply":
            what += " ok" if e.get("ok") else " error"
        line = f"{stamp}  {who} <- {what} {size}"
    elif kind == "message":
        line = (f"{stamp}  message {e.get('room')} #{e.get('offset')} -> "
                f"{e.get('subscribers')} subscribers here {size}")
    elif kind == "connect":
        line = f"{stamp}  {who} connected"
    elif kind == "disconnect":
        line = f"{stamp}  {who} disconnected ({e.get('code')})"
    else:
        return None
    frame = e.get("frame")
    return f"{line}\n      {frame}" if frame else line


def tap(
    admin_url: Annotated[str, typer.Argument(
        show_default=False, metavar="ADMIN_URL",
        help="Admin listener of the node: http://HOST:ADMIN_PORT (HOST:PORT means http).")],
    room: Annotated[str | None, typer.Option(
        show_default=False, help="Watch this room: requests about it, messages fanned out.")
    ] = None,
    user: Annotated[str | None, typer.Option(
        show_default=False, help="Watch this user: connections, requests, frames to it.")
    ] = None,
    connection: Annotated[str | None, typer.Option(
        show_default=False, help="Watch one connection, by the node's connection id.")] = None,
    payloads: Annotated[bool, typer.Option(
        "--payloads", help="Show frames (cut to 1 KiB); the node needs an admin token set.")
    ] = False,
    rate: Annotated[float, typer.Option(
        help=f"Events per second the node sends at most (up to {TAP_MAX_RATE:g}); the rest "
             "are dropped there and counted.")] = 20.0,
    for_: Annotated[str, typer.Option("--for", help="Stop after this long (30s, 10m, 1h).")
                    ] = "1h",
    token: TokenOption = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the node's events as they come, one JSON object per line.")
    ] = False,
) -> None:
    """Watch one room, user or connection of a live node as it happens.

    Example: wsops tap http://127.0.0.1:9765 --room chat:42

    Each line is an event: a request a client sent (->), a frame the node wrote to it (<-), a
    message fanned out in the room, a connection opened or closed. The node sends at most
    --rate events per second and says how many it dropped, so a busy room cannot slow it
    down. Ctrl-C stops. Exit codes: 0 stopped or ended; 1 the node refused or could not be
    reached (the reason is printed); 2 bad options.
    """
    try:
        url = normalize_url(admin_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="ADMIN_URL") from None
    given = named_target(user, room, connection)
    if not given:
        raise typer.BadParameter("give one of --room, --user, --connection")
    if not 1 <= rate <= TAP_MAX_RATE:
        raise typer.BadParameter(f"must be within [1, {TAP_MAX_RATE:g}]", param_hint="--rate")
    try:
        seconds = parse_duration(for_)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--for") from None
    if not 1 <= seconds <= 3600:
        raise typer.BadParameter("must be from 1s to 1h", param_hint="--for")
    query = {**given, "rate": f"{rate:g}", "seconds": f"{seconds:g}",
             "payloads": "true" if payloads else "false"}
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        asyncio.run(_stream(url, token, query, json_out, err))
    except AdminError as exc:
        err.print(f"wsops tap: {escape(str(exc))}", style="red")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("stopped")


async def _stream(url: str, token: str | None, query: dict[str, str], json_out: bool,
                  err: Console) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out = Console(highlight=False, soft_wrap=True)
    dropped = 0
    timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_connect=5)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                url + "/admin/tap", params=query, headers=headers) as resp:
            if resp.status != 200:
                text = await resp.text()
                if resp.status in (400, 403, 404, 409, 501) and text.endswith("\n"):
                    raise AdminError(url, "error", text.strip(), resp.status, text)
                raise refusal(url, "/admin/tap", resp.status, text, bool(token))
            async for raw in resp.content:
                event = json.loads(raw)
                if json_out:
                    typer.echo(raw.decode().rstrip("\n"))
                    continue
                kind = event.get("event")
                if kind == "tap":
                    err.print(f"tapping {event['watching']} on {url}: at most "
                              f"{event['rate']:g} events/s, payloads "
                              f"{'shown' if event['payloads'] else 'hidden'}; Ctrl-C stops")
                elif kind == "stats" and event["dropped"] > dropped:
                    err.print(f"({event['dropped'] - dropped} more events dropped by the "
                              f"node's cap, {event['dropped']} in all: --rate up to "
                              f"{TAP_MAX_RATE:g})", style="yellow")
                    dropped = event["dropped"]
                elif kind == "end":
                    err.print(f"tap ended: {event.get('reason', 'the node stopped')}")
                    return
                else:
                    line = describe(event)
                    if line is not None:
                        out.print(escape(line))
    except aiohttp.ClientConnectorError as exc:
        raise AdminError(url, "down", f"cannot connect: {exc.os_error.strerror or exc}") \
            from None
    except aiohttp.ClientPayloadError:
        err.print("the node closed the stream")
