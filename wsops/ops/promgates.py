"""``wsops rollout --prometheus URL``: the gate figures read from Prometheus over a bake.

Each figure is one PromQL expression per node (``instance`` is the node's admin listener,
where ``/metrics`` is scraped), over the bake's window: the same figures as the admin API's
(``wsops.ops.rolloutplan.figures``), the latencies as the p99 over the whole window rather
than the worst 10 s sample. Before a rollout starts, every family the expressions read must
exist for every node: a missing series is an error, never a gate that passes on no data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import aiohttp

# Families every instrumented node exposes from its start; the others (errors, closes,
# resumes, operations) appear once something happened: absent, they read zero.
FAMILIES: Final = ("wsops_delivery_latency_seconds_bucket", "wsops_event_loop_lag_seconds_bucket",
                   "wsops_connections_opened_total")
_EXPRESSIONS: Final = {
    "delivery_p99": "histogram_quantile(0.99, sum by (instance, le) "
                    "(rate(wsops_delivery_latency_seconds_bucket{{{sel}}}[{w}])))",
    "loop_lag_p99": "histogram_quantile(0.99, sum by (instance, le) "
                    "(rate(wsops_event_loop_lag_seconds_bucket{{{sel}}}[{w}])))",
    "error_rate": "({errors} + {limited}) / (sum by (instance) (increase("
                  "wsops_operation_duration_seconds_count{{{sel}}}[{w}])) + {limited})",
    "abnormal_closes": "sum by (instance) (increase(wsops_connections_closed_total"
                       "{{{sel},code=~\"1006|1011\"}}[{w}]))"
                       " / sum by (instance) (increase(wsops_connections_closed_total"
                       "{{{sel}}}[{w}]))",
    "resume_failures": "sum by (instance) (increase(wsops_resumes_total"
                       "{{{sel},recovered=\"false\"}}[{w}]))",
    "reconnect_rate": "sum by (instance) (rate(wsops_resumes_total{{{sel}}}[{w}]))",
}


class PrometheusError(Exception):
    """Prometheus could not answer, or has no series for a node."""


def instance_of(admin_url: str) -> str:
    """The ``instance`` label Prometheus gives a node scraped at its admin listener."""
    rest = admin_url.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def expressions(selector: str, seconds: float) -> dict[str, str]:
    """Each gate figure's PromQL over the last ``seconds`` (at least 2 scrapes' worth)."""
    window = f"{max(2, math.ceil(seconds))}s"
    def counted(family: str) -> str:  # absent (nothing counted yet) reads 0, not "no value"
        return (f"(sum by (instance) (increase({family}{{{selector}}}[{window}])) "
                f"or sum by (instance) (0 * up{{{selector}}}))")

    errors = counted("wsops_operation_errors_total")
    limited = counted("wsops_rate_limited_messages_total")
    return {m: e.format(sel=selector, w=window, errors=errors, limited=limited)
            for m, e in _EXPRESSIONS.items()}


def values_by_instance(result: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """An instant vector's values by ``instance``; NaN (0/0: nothing happened) reads 0."""
    out: dict[str, float] = {}
    for sample in result:
        value = float(sample["value"][1])
        out[str(sample["metric"].get("instance", ""))] = 0.0 if math.isnan(value) else value
    return out


class PromGates:
    """Reads the gate figures of a fleet's nodes from a Prometheus server."""

    def __init__(self, session: aiohttp.ClientSession, url: str, selector: str,
                 timeout: float) -> None:
        self.session, self.url, self.selector = session, url.rstrip("/"), selector
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def query(self, expr: str) -> list[dict[str, Any]]:
        try:
            async with self.session.get(f"{self.url}/api/v1/query", params={"query": expr},
                                        timeout=self.timeout) as r:
                body = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise PrometheusError(f"{self.url}: {exc or type(exc).__name__}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else body
            raise PrometheusError(f"{self.url} refused {expr!r}: {error}")
        return list(body["data"]["result"])

    async def check(self, admin_urls: Sequence[str]) -> None:
        """Every family the gates read is scraped from every node (PrometheusError if not)."""
        names = "|".join(FAMILIES)
        found = await self.query(f'count by (instance, __name__) '
                                 f'({{__name__=~"{names}",{self.selector}}})')
        have = {(str(s["metric"].get("instance")), str(s["metric"].get("__name__")))
                for s in found}
        seen = sorted({i for i, _ in have})
        for url in admin_urls:
            missing = [f for f in FAMILIES if (instance_of(url), f) not in have]
            if missing:
                raise PrometheusError(
                    f"Prometheus has no {', '.join(missing)} with {{{self.selector}}} for "
                    f"instance {instance_of(url)!r} ({url}); instances it has: "
                    f"{', '.join(seen) or 'none'}")

    async def figures(self, admin_urls: Sequence[str], seconds: float) -> dict[
            str, dict[str, float]]:
        """Each node's gate figures over the last ``seconds``, by admin URL."""
        out: dict[str, dict[str, float]] = {u: {} for u in admin_urls}
        for metric, expr in expressions(self.selector, seconds).items():
            got = values_by_instance(await self.query(expr))
            for url in admin_urls:
                out[url][metric] = got.get(instance_of(url), 0.0)
        return out
