"""``wsops rollout``'s decisions, without I/O: gates, headroom, restart commands, saved state.

A gate is an upper bound on one figure a node's ``/admin/stats`` gives, read over the bake
(``figures``): ``delivery_p99 < 50ms``, ``error_rate < 1%``. Every figure is bad when high.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from wsops.backoff import RECONNECT_HINT_CAP

UNITS: Final = {"ms": 0.001, "s": 1.0, "%": 0.01, "/s": 1.0, "": 1.0}
METRICS: Final = {
    "delivery_p99": ("s", "publish-to-socket p99 over the node's last 10 s, worst sample"),
    "loop_lag_p99": ("s", "event-loop lag p99, worst sample"),
    "error_rate": ("%", "requests answered with an error / requests served, over the bake"),
    "abnormal_closes": ("%", "connections that ended 1006 or 1011 / all that ended"),
    "resume_failures": ("", "resumes told recovered: false (a gap), over the bake"),
    "reconnect_rate": ("/s", "clients coming back (subscribes resuming from an offset) per "
                             "second, over the bake"),
}
DEFAULT_GATES: Final = ("delivery_p99 < 250ms", "loop_lag_p99 < 100ms", "error_rate < 1%",
                        "abnormal_closes < 5%", "resume_failures < 1", "reconnect_rate < 50/s")
ABNORMAL: Final = ("1006", "1011")
_GATE = re.compile(r"\s*([a-z_0-9]+)\s*(<=|<)\s*([0-9]+(?:\.[0-9]*)?)\s*(ms|s|%|/s)?\s*")
PLACEHOLDERS: Final = ("admin_url", "node_id", "host")


@dataclass(frozen=True)
class Gate:
    metric: str
    limit: float  # in the metric's base unit (seconds, a fraction, a count)
    inclusive: bool
    text: str

    def holds(self, value: float) -> bool:
        return value <= self.limit if self.inclusive else value < self.limit


def parse_gate(text: str) -> Gate:
    """``NAME < VALUE[unit]`` (or ``<=``); ValueError saying what is accepted."""
    found = _GATE.fullmatch(text)
    if found is None:
        raise ValueError(f"gate {text!r}: write it as NAME < VALUE[ms|s|%|/s], e.g. "
                         "'delivery_p99 < 50ms'")
    name, op, number, unit = found.group(1), found.group(2), found.group(3), found.group(4) or ""
    if name not in METRICS:
        raise ValueError(f"gate {text!r}: unknown figure {name!r}; known: {', '.join(METRICS)}")
    base = METRICS[name][0]
    if base == "s" and unit not in ("ms", "s"):
        raise ValueError(f"gate {text!r}: {name} is a time: give ms or s")
    if base == "%" and unit not in ("%", ""):
        raise ValueError(f"gate {text!r}: {name} is a share: give % (or a fraction)")
    if base == "/s" and unit not in ("/s", ""):
        raise ValueError(f"gate {text!r}: {name} is a rate: give /s")
    if base == "" and unit:
        raise ValueError(f"gate {text!r}: {name} is a count: give no unit")
    return Gate(name, float(number) * UNITS[unit], op == "<=", text.strip())


def _delta(after: Mapping[str, Any], before: Mapping[str, Any], *path: str) -> float:
    def get(stats: Mapping[str, Any]) -> float:
        value: Any = stats
        for key in path:
            value = value.get(key, {}) if isinstance(value, Mapping) else {}
        return float(value) if isinstance(value, int | float) else 0.0
    return max(0.0, get(after) - get(before))


def figures(samples: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """A node's gate figures over a bake from its ``/admin/stats`` samples (oldest first),
    each with ``sampled_at`` (seconds, any clock) added by the reader."""
    first, last = samples[0], samples[-1]
    elapsed = float(last.get("sampled_at", 0.0)) - float(first.get("sampled_at", 0.0))

    def worst(key: str) -> float:
        return max((float(s[key]) for s in samples if isinstance(s.get(key), int | float)),
                   default=0.0)

    served = _delta(last, first, "operations", "served")
    errors = _delta(last, first, "operations", "errors")
    codes_after = (last.get("hub") or {}).get("close_codes") or {}
    codes_before = (first.get("hub") or {}).get("close_codes") or {}
    ended = {str(c): float(n) - float(codes_before.get(c, codes_before.get(str(c), 0)))
             for c, n in codes_after.items()}
    closed = sum(max(0.0, n) for n in ended.values())
    abnormal = sum(max(0.0, ended.get(code, 0.0)) for code in ABNORMAL)
    return {
        "delivery_p99": worst("delivery_p99_seconds"),
        "loop_lag_p99": worst("loop_lag_p99_seconds"),
        "error_rate": errors / served if served else 0.0,
        "abnormal_closes": abnormal / closed if closed else 0.0,
        "resume_failures": _delta(last, first, "resumes", "failed"),
        "reconnect_rate": (_delta(last, first, "resumes", "recovered")
                           + _delta(last, first, "resumes", "failed")) / elapsed
        if elapsed > 0 else 0.0,
    }


def failed_gates(gates: Sequence[Gate], values: Mapping[str, float]) -> list[str]:
    """What each failed gate saw: ``"delivery_p99 < 50ms: 0.212"``; empty when all hold."""
    return [f"{g.text}: {show(g.metric, values[g.metric])}" for g in gates
            if not g.holds(values[g.metric])]


def show(metric: str, value: float) -> str:
    unit = METRICS[metric][0]
    if unit == "s":
        return f"{value * 1000:.1f} ms"
    if unit == "%":
        return f"{value * 100:.2f}%"
    if unit == "/s":
        return f"{value:.1f}/s"
    return f"{value:g}"


def headroom_problem(node: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the rest of the fleet could not take ``node``'s connections (None when it can):
    their free places (``connections_max - connections``, ready nodes only)."""
    need = int(node.get("connections", 0))
    free = sum(max(0, int(o.get("connections_max", 0)) - int(o.get("connections", 0)))
               for o in others if o.get("ready", False))
    if need > free:
        return (f"the rest of the fleet has {free} free connection places for this node's "
                f"{need} connections: add a node or raise --max-connections first "
                "(or --no-headroom-check)")
    return None


def drain_spread(connections: int, ready_others: int, accept_rate: float,
                 node_spread: float) -> float | None:
    """The reconnect window a drain of ``connections`` needs so that the ``ready_others``
    nodes, each accepting ``accept_rate`` connections/s, take them back without a burst; None
    when the node's own ``--drain-spread`` (``node_spread``) is already wide enough. Capped at
    the clients' hint cap (a wider window is not honoured)."""
    needed = connections / (accept_rate * max(1, ready_others))
    if needed <= node_spread:
        return None
    return min(RECONNECT_HINT_CAP, round(needed, 1))


def restart_command(template: str, admin_url: str, node_id: str, host: str) -> str:
    """``template`` with ``{admin_url}``, ``{node_id}`` and ``{host}`` filled (shell-quoted)."""
    values = {"admin_url": admin_url, "node_id": node_id, "host": host}
    try:
        return template.format_map({k: shlex.quote(v) for k, v in values.items()})
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"command {template!r}: placeholders are "
                         f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)} ({exc})") from None


@dataclass
class RolloutState:
    """What a rollout did, saved after every node so ``--resume`` skips what is done."""

    nodes: list[str]
    done: list[str] = field(default_factory=list)
    failed: str | None = None
    reason: str | None = None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> RolloutState:
        try:
            raw = json.loads(path.read_text())
            return cls(list(raw["nodes"]), list(raw["done"]), raw.get("failed"),
                       raw.get("reason"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot resume from {path}: {exc}") from None

    def todo(self) -> list[str]:
        return [n for n in self.nodes if n not in self.done]
