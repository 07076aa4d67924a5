"""The node surface of any instrumented aiohttp app: what ``/admin/*`` serves for it.

Connections are the instrumentation's live set, the drain closes them (``Drainer``) while the
middleware refuses new upgrades, and the leak checks are the ones an app appended to
``Instrumentation.leak_checks``. The bundled server has its own surface (``wsops.server``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import cast

from wsops.admin.contract import (
    BatchCloses,
    Connections,
    DrainOptions,
    DrainStatus,
    FlowSnapshot,
    Stats,
)
from wsops.admin.fleetpage import default_node_id
from wsops.admin.surface import DebugControl, PeerLister, ReadinessCheck
from wsops.instrumentation.drainer import DEFAULT_SPREAD, SERVICE_RESTART, Drainer
from wsops.instrumentation.middleware import Instrumentation

log = logging.getLogger(__name__)

DEFAULT_DRAIN = DrainOptions(batch=100, interval=0.5, deadline=30.0, code=SERVICE_RESTART,
                             spread=DEFAULT_SPREAD)


def run_leak_checks(checks: Iterable[Callable[[], dict[str, float]]]) -> dict[str, float]:
    """Every check's figures; a check that fails is logged and left out (one broken check
    must not take a profiling sample down)."""
    out: dict[str, float] = {}
    for check in checks:
        try:
            out.update(check())
        except Exception:
            log.exception("leak check %r failed", check)
    return out


def drain_status(drainer: Drainer, remaining: int) -> DrainStatus:
    st = drainer.status
    return DrainStatus(state=st.state, started_at=st.started_at, finished_at=st.finished_at,
                       total=st.total, closed=st.closed, forced=st.forced, batches=st.batches,
                       remaining=remaining)


def start_drain(drainer: Drainer, options: DrainOptions) -> bool:
    """Start ``drainer`` with ``options``; False if a drain was already under way."""
    started = drainer.status.state != "draining"
    drainer.start(options["batch"], options["interval"], options["deadline"], options["code"],
                  options["spread"])
    return started


class AppSurface:
    """``NodeSurface`` of an app wrapped with ``instrument(app)``."""

    def __init__(self, inst: Instrumentation, node_id: str | None = None) -> None:
        self.inst = inst
        self._node_id = node_id or default_node_id()

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def drain_defaults(self) -> DrainOptions:
        return DEFAULT_DRAIN

    @property
    def readiness_checks(self) -> Sequence[ReadinessCheck]:
        return (self._draining,)

    @property
    def peers(self) -> PeerLister | None:
        return None

    @property
    def debug_switch(self) -> DebugControl | None:
        return None

    def flow(self, top: int) -> FlowSnapshot | None:
        return None

    def _draining(self) -> str | None:
        return "draining" if self.inst.drainer.draining else None

    def stats(self) -> Stats:
        # ready / not_ready_reasons: the listener's (admin.api.node_stats), every check.
        return cast(Stats, {**self.inst.figures(), "draining": self.inst.drainer.draining,
                            "drain": self.drain_status()})

    def drain_status(self) -> DrainStatus:
        return drain_status(self.inst.drainer, self.inst.live.total())

    def drain_closes(self) -> list[BatchCloses]:
        return self.inst.drainer.status.closes.as_list()

    def start_drain(self, options: DrainOptions) -> bool:
        return start_drain(self.inst.drainer, options)

    def cancel_drain(self) -> bool:
        return self.inst.drainer.cancel()

    def connections(self, top: int) -> Connections:
        return Connections(total=self.inst.live.total(), by_route=self.inst.live.counts())

    def open_connections(self) -> int:
        return self.inst.live.total()

    def leak_checks(self) -> dict[str, float]:
        return run_leak_checks(self.inst.leak_checks)
