"""``wsops publish``, ``wsops rooms``, ``wsops disconnect`` and ``wsops revoke``: a node's
server API from the shell (``--api-port``; the key from ``WSOPS_API_KEY``), through
``wsops.client.ApiClient``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from wsops.client.apiclient import ApiCallError, ApiClient
from wsops.ops.debug import parse_duration

T = TypeVar("T")
ApiUrl = Annotated[str, typer.Argument(
    show_default=False, metavar="API_URL",
    help="The node's server API: http://HOST:API_PORT (wsops serve --api-port).")]
KeyOption = Annotated[str | None, typer.Option(
    envvar="WSOPS_API_KEY", show_envvar=True, show_default=False,
    help="An API key of the node (one of its WSOPS_API_KEYS).")]
SignOption = Annotated[bool, typer.Option(
    "--sign", help="Sign the request (for nodes run with --api-signatures).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the node's answer as JSON.")]


def _run(url: str, key: str | None, sign: bool, call: Callable[[ApiClient], Awaitable[T]]) -> T:
    """``call`` against the API at ``url``; a refusal or an unreachable node exits 1."""
    if not key:
        raise typer.BadParameter("give the API key: --key or WSOPS_API_KEY", param_hint="--key")
    if not url.startswith(("http://", "https://")):
        url = "http://" + url

    async def go() -> T:
        async with ApiClient(url, key, sign=sign) as api:
            return await call(api)

    try:
        return asyncio.run(go())
    except ApiCallError as exc:
        typer.secho(f"refused: {exc}", fg=typer.colors.RED, err=True)
    except (OSError, TimeoutError) as exc:
        typer.secho(f"cannot reach {url}: {exc or type(exc).__name__}", fg=typer.colors.RED,
                    err=True)
    raise typer.Exit(1)


def _print(answer: Any, as_json: bool, text: str) -> None:
    if as_json:
        json.dump(answer, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        typer.echo(text)


def publish(
    api_url: ApiUrl,
    room: Annotated[str, typer.Argument(show_default=False, help="The room.")],
    data: Annotated[str, typer.Argument(
        show_default=False, help="The message: JSON (a bare word is sent as a string).")],
    key: KeyOption = None, sign: SignOption = False, json_out: JsonOption = False,
) -> None:
    """Publish a message to a room through a node's server API.

    Example: wsops publish http://127.0.0.1:9800 orders:42 '{"status": "shipped"}'
    """
    try:
        value: Any = json.loads(data)
    except ValueError:
        value = data
    got = _run(api_url, key, sign, lambda api: api.publish(room, value))
    _print(got, json_out, f"published to {got['room']} at offset {got['offset']} "
           f"(epoch {got['epoch']})")


def rooms(
    api_url: ApiUrl,
    pattern: Annotated[str | None, typer.Option(
        show_default=False, help="Only rooms matching this glob (chat:*).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Rooms shown at most.")] = 100,
    key: KeyOption = None, sign: SignOption = False, json_out: JsonOption = False,
) -> None:
    """List a node's rooms with their connections, busiest first."""
    got = _run(api_url, key, sign, lambda api: api.rooms(pattern, limit))
    lines = [f"{r['connections']:>8}  {r['room']}" for r in got["rooms"]]
    more = ["   (more: raise --limit)"] if got["truncated"] else []
    _print(got, json_out, "\n".join(["connections  room", *lines, *more]) if lines
           else "no room")


def disconnect(
    api_url: ApiUrl,
    user: Annotated[str | None, typer.Option(
        show_default=False, help="Close this user's connections on every node.")] = None,
    connection: Annotated[int | None, typer.Option(
        show_default=False, help="Close this one connection of the node called.")] = None,
    code: Annotated[int | None, typer.Option(
        show_default=False, help="Close code (default 4002).")] = None,
    reason: Annotated[str | None, typer.Option(
        show_default=False, help="Close reason the clients see.")] = None,
    key: KeyOption = None, sign: SignOption = False, json_out: JsonOption = False,
) -> None:
    """Close a user's connections on every node of the fleet (or one connection).

    Example: wsops disconnect http://127.0.0.1:9800 --user alice --reason 'account locked'
    """
    if (user is None) == (connection is None):
        raise typer.BadParameter("give one of --user and --connection", param_hint="--user")
    n = _run(api_url, key, sign, lambda api: api.disconnect(
        user=user, connection=connection, code=code, reason=reason))
    where = "; the other nodes close theirs" if user is not None else ""
    _print({"disconnected": n}, json_out, f"closed {n} connection(s) on this node{where}")


def revoke(
    api_url: ApiUrl,
    user: Annotated[str | None, typer.Option(
        show_default=False, help="Refuse this user (every token with this sub).")] = None,
    jti: Annotated[str | None, typer.Option(
        show_default=False, help="Refuse this one token (its jti claim).")] = None,
    for_: Annotated[str, typer.Option(
        "--for", help="How long (30s, 10m, 12h; at most a year); the entry then expires.")
    ] = "1h",
    key: KeyOption = None, sign: SignOption = False, json_out: JsonOption = False,
) -> None:
    """Refuse a user or a token on every node for a while, and close its connections now.

    Example: wsops revoke http://127.0.0.1:9800 --user alice --for 12h
    """
    if (user is None) == (jti is None):
        raise typer.BadParameter("give one of --user and --jti", param_hint="--user")
    try:
        seconds = parse_duration(for_)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--for") from None
    got = _run(api_url, key, sign, lambda api: api.revoke(user=user, jti=jti, seconds=seconds))
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(got["until"]))
    _print(got, json_out, f"{got['kind']} {got['value']} refused on every node until {until}; "
           f"closed {got['disconnected']} connection(s) on this node")
