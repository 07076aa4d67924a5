"""What ``wsops status`` and ``wsops top`` show (pure): targets, a row per node, sorting, output.

Rows come from the JSON of ``/admin/stats`` (see ``Instrumentation.stats``); a node that could
not be asked is a row too, marked down (unreachable) or error (it answered, but not with stats).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from wsops.admin.contract import finite
from wsops.memory_per_connection import MIN_CONNECTIONS, shown

NODES_ENV: Final = "WSOPS_NODES"
SORT_KEYS: Final = ("connections", "rate", "p99", "lag", "rss")
UP, DOWN, ERROR = "up", "down", "error"


# -- targets ---------------------------------------------------------------------------------


def normalize_url(text: str) -> str:
    """``http://host:port`` of an admin listener; ``host:port`` alone means http."""
    url = text.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme in ("ws", "wss"):
        raise ValueError(f"{text!r} is a WebSocket URL: give the node's admin listener, "
                         "e.g. http://HOST:9765")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an admin URL like http://HOST:9765")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError(f"{text!r} has a bad port") from None
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def nodes_in_file(text: str) -> list[str]:
    """One URL per line; ``#`` starts a comment; blank lines are skipped."""
    return [line for raw in text.splitlines() if (line := raw.split("#", 1)[0].strip())]


def nodes_in_env(value: str) -> list[str]:
    """URLs separated by commas and/or whitespace (``WSOPS_NODES``)."""
    return [part for part in re.split(r"[,\s]+", value) if part]


def targets(args: Sequence[str], file_text: str | None, env_value: str | None) -> list[str]:
    """Arguments plus the file's nodes; ``WSOPS_NODES`` only when both are empty. Deduplicated.

    Raises ``ValueError`` for a bad URL or when no node is given at all.
    """
    given = [*args, *(nodes_in_file(file_text) if file_text is not None else [])]
    if not given and env_value:
        given = nodes_in_env(env_value)
    if not given:
        raise ValueError(f"no nodes: give admin URLs, --file FILE or {NODES_ENV}")
    return list(dict.fromkeys(normalize_url(u) for u in given))


# -- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeView:
    """One node as the table shows it; numbers are None when the node does not report them."""

    url: str
    status: str  # up | down | error
    error: str | None = None
    state: str = ""  # ready | not ready | draining | drained
    reasons: tuple[str, ...] = ()
    connections: int | None = None
    in_rate: float | None = None
    out_rate: float | None = None
    delivery_p99: float | None = None
    lag_p99: float | None = None
    rss: float | None = None
    mem_per_conn: float | None = None  # None also below MIN_CONNECTIONS (wsops.memory_per_...)
    uptime: float | None = None
    version: str | None = None
    raw: Mapping[str, Any] | None = None

    @property
    def up(self) -> bool:
        return self.status == UP


def _num(stats: Mapping[str, Any], key: str) -> float | None:
    value = stats.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def view_of(url: str, stats: Mapping[str, Any]) -> NodeView:
    """The row of a node that answered ``/admin/stats`` with ``stats``."""
    reasons = tuple(dict.fromkeys(str(r) for r in stats.get("not_ready_reasons") or ()))
    drain = stats.get("drain")
    drain = drain if isinstance(drain, dict) else {}
    if stats.get("draining"):
        state = "drained" if drain.get("state") == "drained" else "draining"
    else:
        state = "ready" if stats.get("ready", not reasons) else "not ready"
    connections = _num(stats, "connections")
    per_conn = _num(stats, "memory_per_connection_bytes")
    return NodeView(
        url, UP, state=state, reasons=reasons,
        connections=None if connections is None else int(connections),
        in_rate=_num(stats, "messages_in_per_second"),
        out_rate=_num(stats, "messages_out_per_second"),
        delivery_p99=_num(stats, "delivery_p99_seconds"),
        lag_p99=_num(stats, "loop_lag_p99_seconds"),
        rss=_num(stats, "rss_bytes"),
        mem_per_conn=shown(per_conn, connections),
        uptime=_num(stats, "uptime_seconds"),
        version=str(stats["version"]) if stats.get("version") is not None else None,
        raw=stats,
    )


def failed(url: str, message: str, *, down: bool) -> NodeView:
    """The row of a node that could not be asked: ``down`` (unreachable) or error."""
    return NodeView(url, DOWN if down else ERROR, error=message)


_SORTERS: Final[Mapping[str, Callable[[NodeView], float]]] = {
    "connections": lambda v: float(v.connections or 0),
    "rate": lambda v: (v.in_rate or 0.0) + (v.out_rate or 0.0),
    "p99": lambda v: -1.0 if v.delivery_p99 is None else v.delivery_p99,
    "lag": lambda v: -1.0 if v.lag_p99 is None else v.lag_p99,
    "rss": lambda v: v.rss or 0.0,
}


def sort_views(views: Iterable[NodeView], key: str) -> list[NodeView]:
    """Highest ``key`` first, like ``top``; nodes that are not up last, by URL."""
    if key not in _SORTERS:
        raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}")
    rows = list(views)
    up = sorted((v for v in rows if v.up), key=_SORTERS[key], reverse=True)
    return up + sorted((v for v in rows if not v.up), key=lambda v: v.url)


# -- formatting ------------------------------------------------------------------------------


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def fmt_seconds(s: float | None) -> str:
    """A latency: µs, ms or s; ``+Inf`` past the histogram's last bucket."""
    if s is None:
        return "-"
    if math.isinf(s):
        return "+Inf"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def fmt_rate(r: float | None) -> str:
    if r is None:
        return "-"
    if r >= 1000:
        return f"{r / 1000:.1f}k"
    return f"{r:.1f}" if r < 10 else f"{r:.0f}"


def fmt_uptime(s: float | None) -> str:
    if s is None:
        return "-"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{sec:02d}s" if m else f"{sec}s"


_STATE_STYLE: Final = {"ready": "green", "draining": "yellow", "drained": "yellow",
                       "not ready": "red", DOWN: "bold red", ERROR: "bold red"}
COLUMNS: Final = ("NODE", "STATE", "CONNS", "IN/s", "OUT/s", "DELIVERY p99", "LOOP LAG p99",
                  "RSS", "MEM/CONN", "UPTIME", "VERSION")
MEM_PER_CONN_NOTE: Final = (f"MEM/CONN: RSS above the process's RSS at its start, divided by "
                            f"the connections; n/a below {MIN_CONNECTIONS} connections")


def fmt_mem_per_conn(v: NodeView) -> str:
    """The MEM/CONN cell: ``n/a`` for a node with fewer than ``MIN_CONNECTIONS`` connections,
    ``-`` when it does not report the figure."""
    if v.mem_per_conn is not None:
        return fmt_bytes(v.mem_per_conn)
    known = v.raw is not None and _num(v.raw, "memory_per_connection_bytes") is not None
    return "n/a" if known and (v.connections or 0) < MIN_CONNECTIONS else "-"


def summary(views: Sequence[NodeView]) -> str:
    """One line: how many nodes are up, connections and message rates over the fleet."""
    up = [v for v in views if v.up]
    conns = sum(v.connections or 0 for v in up)
    rate_in = sum(v.in_rate or 0.0 for v in up)
    rate_out = sum(v.out_rate or 0.0 for v in up)
    down = len(views) - len(up)
    return (f"{len(views)} node{'s' if len(views) != 1 else ''}: {len(up)} up"
            + (f", {down} down" if down else "")
            + f" · {conns:,} connections · {fmt_rate(rate_in)} msg/s in, "
            f"{fmt_rate(rate_out)} msg/s out")


def render(views: Sequence[NodeView], title: str | None = None) -> RenderableType:
    """The table, then one line per node that is not up saying why."""
    table = Table(title=title, title_justify="left", header_style="bold",
                  caption=MEM_PER_CONN_NOTE, caption_justify="left")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("NODE", "STATE", "VERSION") else "right",
                         no_wrap=name == "NODE")
    for v in views:
        state = v.state if v.up else v.status
        label = Text(state, style=_STATE_STYLE.get(state, ""))
        if v.up and v.state == "not ready" and v.reasons:
            label.append(f" ({', '.join(v.reasons)})")
        table.add_row(
            v.url, label, "-" if v.connections is None else f"{v.connections:,}",
            fmt_rate(v.in_rate), fmt_rate(v.out_rate), fmt_seconds(v.delivery_p99),
            fmt_seconds(v.lag_p99), fmt_bytes(v.rss), fmt_mem_per_conn(v),
            fmt_uptime(v.uptime), v.version or "-",
        )
    notes = [Text(f"{v.status} {v.url}: {v.error}", style="red") for v in views if not v.up]
    return Group(table, *notes) if notes else table


def as_json(views: Sequence[NodeView]) -> dict[str, Any]:
    """``--json``: every node (with its raw stats when up) and fleet totals."""
    nodes = [{
        "url": v.url, "status": v.status, "error": v.error, "state": v.state or None,
        "not_ready_reasons": list(v.reasons), "connections": v.connections,
        "messages_in_per_second": v.in_rate, "messages_out_per_second": v.out_rate,
        "delivery_p99_seconds": v.delivery_p99, "loop_lag_p99_seconds": v.lag_p99,
        "rss_bytes": v.rss, "memory_per_connection_bytes": v.mem_per_conn,
        "uptime_seconds": v.uptime, "version": v.version, "stats": v.raw,
    } for v in views]
    up = [v for v in views if v.up]
    out: dict[str, Any] = finite({
        "nodes": nodes,
        "up": len(up),
        "down": len(views) - len(up),
        "connections": sum(v.connections or 0 for v in up),
    })
    return out


_SHARD_STYLE: Final = {"up": "green", "failing": "yellow", "down": "bold red"}


def render_broker(shards: Sequence[dict[str, Any]] | str) -> RenderableType:
    """The broker's shards (``redis_fleet.broker_topology``), or why they could not be read."""
    if isinstance(shards, str):
        return Text(f"broker: {shards}", style="red")
    table = Table(title=f"broker: {len(shards)} shard{'s' * (len(shards) != 1)}",
                  title_justify="left", header_style="bold")
    for name in ("SLOTS", "MASTER", "STATE", "KEYS", "REPLICAS"):
        table.add_column(name, justify="right" if name == "KEYS" else "left")
    for shard in shards:
        slots = ", ".join(f"{a}-{b}" for a, b in shard["slots"])
        state = ("up" if shard["healthy"] else "failing") if shard["up"] else "down"
        keys = shard.get("keys")
        table.add_row(slots, shard["master"] or "-",
                      Text(state, style=_SHARD_STYLE[state]),
                      "-" if keys is None else f"{keys:,}", ", ".join(shard["replicas"]) or "-")
    return table
