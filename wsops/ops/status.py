"""``wsops status`` and ``wsops top``: many nodes in one table, once or live.

Both ask ``/admin/stats`` of every node given in parallel (``wsops.admin.apiclient``) and draw rows
(``fleetview``); a node that does not answer is a row marked down, never a crash. Nodes found in
a fleet registry (``--redis``) are read from the summaries they write there themselves
(``wsops.admin.nodesummary``), like the fleet page does: the admin token goes only to the URLs
the operator gave, never to an address a registry entry names (anyone able to write one entry
would otherwise collect it).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from wsops.admin.access import ADMIN_TOKEN_ENV
from wsops.admin.apiclient import DEFAULT_TIMEOUT, DOWN, fetch_stats
from wsops.admin.nodesummary import peer_row
from wsops.ops.fleetview import (
    NODES_ENV,
    NodeView,
    as_json,
    failed,
    render,
    render_broker,
    sort_views,
    summary,
    targets,
    view_of,
)

TokenOption = Annotated[str | None, typer.Option(
    envvar=ADMIN_TOKEN_ENV, show_envvar=True, show_default=False,
    help="Admin token of the nodes, sent as 'Authorization: Bearer'. Without one, nodes "
         "answer loopback clients only.")]
UrlsArgument = Annotated[list[str] | None, typer.Argument(
    show_default=False, metavar="URL",
    help="Admin listeners of the nodes: http://HOST:ADMIN_PORT (HOST:PORT means http).")]
FileOption = Annotated[Path | None, typer.Option(
    "--file", "-f", show_default=False,
    help=f"File with one admin URL per line ('#' comments). Without URLs or --file, "
         f"{NODES_ENV} (comma or space separated) is read.")]
TimeoutOption = Annotated[float, typer.Option(help="Seconds to wait for each node.")]


class SortKey(enum.StrEnum):
    connections = "connections"
    rate = "rate"
    p99 = "p99"
    lag = "lag"
    rss = "rss"


RedisOption = Annotated[str | None, typer.Option(
    "--redis", envvar="WSOPS_REDIS", show_default=False,
    help="Also list the nodes of the fleet registry in this Redis (the nodes' --broker URL), "
         "from the summaries they write there (no request to them, no token sent).")]


@dataclass(frozen=True)
class Nodes:
    """Where the rows come from: admin URLs to ask (with the token), and a fleet registry."""

    urls: list[str]
    redis: str | None = None


async def _registry(redis_url: str, patience: float) -> list[dict[str, Any]]:
    from wsops.server.broker.redis_fleet import list_nodes

    return await list_nodes(redis_url, timeout=patience)


def registry_admin_urls(redis_url: str) -> list[str]:
    """The admin URLs the fleet registry in ``redis_url`` lists, sorted (``--redis`` of
    rollout and drain); a registry that cannot be read is a bad ``--redis``."""
    try:
        nodes = asyncio.run(_registry(redis_url, DEFAULT_TIMEOUT))
    except Exception as exc:
        raise typer.BadParameter(f"cannot read the fleet registry: {exc}",
                                 param_hint="--redis") from None
    return sorted(str(n["admin_url"]) for n in nodes if n.get("admin_url"))


async def _topology(redis_url: str, patience: float) -> list[dict[str, Any]] | str:
    """The broker's shards, or why they could not be read."""
    from wsops.server.broker.redis_fleet import broker_topology

    try:
        return await broker_topology(redis_url, timeout=patience)
    except Exception as exc:
        return f"cannot read the broker's topology: {exc}"


def _nodes(urls: Sequence[str] | None, file: Path | None, redis_url: str | None = None
           ) -> Nodes:
    try:
        text = file.read_text() if file is not None else None
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc.strerror}",
                                 param_hint="--file") from None
    if redis_url:
        try:
            found = asyncio.run(_registry(redis_url, DEFAULT_TIMEOUT))
        except Exception as exc:
            raise typer.BadParameter(f"cannot read the fleet registry: {exc}",
                                     param_hint="--redis") from None
        if not found and not urls and text is None:
            raise typer.BadParameter("no live node is registered there", param_hint="--redis")
        if not urls and text is None:
            return Nodes([], redis_url)
    try:
        return Nodes(targets(list(urls or []), text, os.environ.get(NODES_ENV)), redis_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="URLS") from None


def _console() -> Console:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=200)  # piped: no terminal width to fit, keep rows on one line
    return console


async def _views(session: aiohttp.ClientSession, nodes: Nodes, token: str | None,
                 patience: float) -> list[NodeView]:
    urls = nodes.urls
    results = await fetch_stats(session, urls, token, patience)
    views = [view_of(url, r) if isinstance(r, dict) else failed(url, r.message,
                                                                 down=r.kind == DOWN)
             for url, r in zip(urls, results, strict=True)]
    if nodes.redis is not None:
        views += await _registry_views(nodes.redis, set(urls), patience)
    return views


async def _registry_views(redis_url: str, asked: set[str], patience: float) -> list[NodeView]:
    """Rows of the registry's nodes not asked directly, from their own summaries."""
    try:
        records = await _registry(redis_url, patience)
    except Exception as exc:
        return [failed(redis_url, f"cannot read the fleet registry: {exc}", down=True)]
    now = time.time()
    views = []
    for record in records:
        row = peer_row(record, now)
        url = row["admin_url"] or row["id"]
        if url in asked:
            continue
        views.append(view_of(url, row["stats"]) if row["error"] is None
                     else failed(url, row["error"], down=False))
    return views


def status(
    urls: UrlsArgument = None,
    file: FileOption = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print JSON (every node, its raw /admin/stats, fleet totals).")] = False,
    token: TokenOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    redis: RedisOption = None,
) -> None:
    """One table for many nodes: up, ready or draining, connections, messages/s in and out,
    delivery p99, event-loop lag p99, RSS and memory per connection (RSS above the process's
    at its start, per connection; n/a below 100 connections), uptime, version.

    Example: wsops status http://10.0.0.1:9765 http://10.0.0.2:9765 --token "$WSOPS_ADMIN_TOKEN"

    Example: WSOPS_NODES="10.0.0.1:9765,10.0.0.2:9765" wsops status --json

    Example: wsops status --redis redis://10.0.0.5:6379/0   (a fleet on the Redis broker)

    Example: wsops status --redis redis+cluster://10.0.0.5:7000   (and the cluster's shards)

    Nodes are asked in parallel; one that does not answer within --timeout is a 'down' row, one
    that refuses (token) or is not a wsops admin API an 'error' row. Nodes found with --redis
    are read from the summaries they write to the registry at every heartbeat (2 s): no request
    goes to an address a registry entry names, so the token is never sent there. With --redis a
    second table shows the broker: its shards (one for one Redis or Sentinel's master), the
    slots each serves, its master, state, key count and replicas. Exit codes: 0
    every node up; 1 any node down or in error; 2 bad usage.
    """
    nodes = _nodes(urls, file, redis)
    if timeout <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--timeout")

    async def ask() -> tuple[list[NodeView], list[dict[str, Any]] | str | None]:
        async with aiohttp.ClientSession() as session:
            views = await _views(session, nodes, token, timeout)
        shards = await _topology(nodes.redis, timeout) if nodes.redis is not None else None
        return views, shards

    views, shards = asyncio.run(ask())
    if json_out:
        out = as_json(views)
        if shards is not None:
            out["broker"] = ({"error": shards} if isinstance(shards, str)
                             else {"shards": shards})
        typer.echo(json.dumps(out, indent=2))
    else:
        console = _console()
        console.print(render(views, title=summary(views)))
        if shards is not None:
            console.print(render_broker(shards))
    raise typer.Exit(0 if all(v.up for v in views) else 1)


def top(
    urls: UrlsArgument = None,
    file: FileOption = None,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
    sort: Annotated[SortKey, typer.Option(
        help="Column to sort by, highest first: connections, rate (messages in+out per "
             "second), p99 (delivery), lag (event loop) or rss.")] = SortKey.connections,
    iterations: Annotated[int | None, typer.Option(
        show_default=False, help="Stop after this many refreshes (default: until q).")] = None,
    token: TokenOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    redis: RedisOption = None,
) -> None:
    """Live view of many nodes, like top: the status table, refreshed and sorted.

    Example: wsops top http://10.0.0.1:9765 http://10.0.0.2:9765 --sort rate --interval 1

    Example: wsops top --redis redis://10.0.0.5:6379/0   (the registry read at every refresh)

    Press q or Ctrl-C to quit. When the output is not a terminal, every refresh prints a new
    table (with --iterations N for a bounded run). Nodes that do not answer are shown as down.
    """
    nodes = _nodes(urls, file, redis)
    if interval <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--interval")
    if iterations is not None and iterations < 1:
        raise typer.BadParameter("must be >= 1", param_hint="--iterations")
    if timeout <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--timeout")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_top(nodes, token, timeout, interval, sort.value, iterations, _console()))


def _frame(views: list[NodeView], sort: str, interval: float, live: bool) -> Group:
    head = Text(f"wsops top · {time.strftime('%H:%M:%S')} · {summary(views)}", style="bold")
    hint = f"every {interval:g} s, sorted by {sort}" + (" · q to quit" if live else "")
    return Group(head, Text(hint, style="dim"), render(sort_views(views, sort)))


async def _top(nodes: Nodes, token: str | None, patience: float, interval: float, sort: str,
               iterations: int | None, console: Console) -> None:
    stop = asyncio.Event()
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    with _quit_keys(stop), live or contextlib.nullcontext():
        async with aiohttp.ClientSession() as session:
            done = 0
            while not stop.is_set():
                frame = _frame(await _views(session, nodes, token, patience), sort, interval,
                               live is not None)
                if live is not None:
                    live.update(frame, refresh=True)
                else:
                    console.print(frame)
                done += 1
                if iterations is not None and done >= iterations:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)


@contextlib.contextmanager
def _quit_keys(stop: asyncio.Event) -> Iterator[None]:
    """``q`` sets ``stop`` when stdin is a terminal (read in cbreak mode); so does Ctrl-C when
    this runs in the main thread (elsewhere Ctrl-C raises KeyboardInterrupt as usual)."""
    loop = asyncio.get_running_loop()
    undo: list[Callable[[], object]] = []
    try:
        loop.add_signal_handler(signal.SIGINT, stop.set)
        undo.append(lambda: loop.remove_signal_handler(signal.SIGINT))
    except (ValueError, RuntimeError, NotImplementedError):
        pass
    try:
        import termios
        import tty

        fd = sys.stdin.fileno()
        if sys.stdin.isatty():
            saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
            undo.append(lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved))

            def on_key() -> None:
                if b"q" in os.read(fd, 64).lower():
                    stop.set()

            loop.add_reader(fd, on_key)
            undo.append(lambda: loop.remove_reader(fd))
    except (ImportError, OSError, ValueError):
        pass  # no terminal to read keys from: Ctrl-C and --iterations still end it
    try:
        yield
    finally:
        for step in reversed(undo):
            step()
