"""What a node says about itself in the fleet registry, and how the fleet page reads it back.

Every heartbeat the Redis broker writes the node's registry entry (``wsops:node:<id>``, a hash
of strings; ``wsops.server.broker.redis_fleet``): its admin URL, version, start time, draining
flag and connections, plus the fields ``summary_fields`` adds, a fixed set of small figures from
the node's ``/admin/stats`` (readiness, rates, quantiles, memory, totals, drain progress). Every
field is written at every beat, ``""`` for unknown, so no figure outlives the beat that wrote it.

The fleet page shows its peers from these entries only: it sends no request to any address the
registry names, so whoever can write a registry entry learns nothing, least of all the admin
token. ``peer_row`` treats an entry as untrusted input: known fields only, numbers finite and
non-negative, text cut to a few hundred characters.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

FLOAT_FIELDS = ("messages_in_per_second", "messages_out_per_second", "delivery_p99_seconds",
                "loop_lag_p99_seconds", "memory_per_connection_bytes", "rss_bytes",
                "cpu_seconds")
INT_FIELDS = ("messages_in_total", "messages_out_total")
DRAIN_FIELDS = ("closed", "total")
"""Published as ``drain_closed`` and ``drain_total``: the page's "draining 3/10 closed"."""
MAX_REASONS_CHARS = 300
MAX_ID_CHARS = 128
MAX_URL_CHARS = 256
MAX_VERSION_CHARS = 64
MAX_INT = 2**53


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}" if math.isfinite(value) else ""


def summary_fields(stats: Callable[[], Mapping[str, Any]]) -> dict[str, object]:
    """The registry fields for this node's ``stats()`` (its ``/admin/stats``); none when that
    fails, so a bug here never stops the heartbeat that carries them."""
    try:
        s = stats()
        reasons = "; ".join(str(r) for r in s.get("not_ready_reasons") or ())
        drain = s.get("drain") or {}
        out: dict[str, object] = {"ready": bool(s.get("ready")),
                                  "not_ready": reasons[:MAX_REASONS_CHARS]}
        out.update({name: _number(s.get(name)) for name in (*FLOAT_FIELDS, *INT_FIELDS)})
        out.update({f"drain_{name}": _number(drain.get(name)) for name in DRAIN_FIELDS})
    except Exception:
        log.exception("node summary for the fleet registry failed")
        return {}
    return out


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value[:32] if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and 0 <= number <= 1e18 else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None and number <= MAX_INT else None


def _flag(value: Any) -> bool | None:
    if value in (True, "1"):
        return True
    if value in (False, "0"):
        return False
    return None


def peer_row(record: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A fleet page row from one registry entry (``list_nodes`` shape), typed and bounded."""
    stats: dict[str, Any] = {name: _float(record.get(name)) for name in FLOAT_FIELDS}
    stats.update({name: _int(record.get(name)) for name in (*INT_FIELDS, "connections")})
    started = _float(record.get("started_at"))
    reasons = _text(record.get("not_ready"), MAX_REASONS_CHARS)
    stats.update({
        "version": _text(record.get("version"), MAX_VERSION_CHARS) or None,
        "started_at": started,
        "uptime_seconds": max(0.0, now - started) if started is not None else None,
        "ready": _flag(record.get("ready")),
        "not_ready_reasons": [r for r in reasons.split("; ") if r],
        "draining": _flag(record.get("draining")) is True,
        "drain": {name: _int(record.get(f"drain_{name}")) for name in DRAIN_FIELDS},
    })
    return {
        "id": _text(record.get("id"), MAX_ID_CHARS),
        "admin_url": _text(record.get("admin_url"), MAX_URL_CHARS) or None,
        "self": False,
        "stats": stats,
        "as_of": _float(record.get("heartbeat_at")),
        "error": None if stats["ready"] is not None else
        "no summary in its registry entry (an older wsops, or instrumentation off)",
    }
