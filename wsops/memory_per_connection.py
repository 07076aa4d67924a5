"""Memory per connection: the one definition behind ``wsops_memory_per_connection_bytes``, the
MEM/CONN column of ``wsops status`` and ``top``, the fleet page and ``wsops loadtest``.

The figure is resident memory above a baseline, divided by the connections open::

    max(0, RSS - baseline RSS) / connections        (0 without connections)

The baseline is the process's RSS before it held connections: for a node, its RSS when its
runtime collector started (the node serves right after); for ``wsops loadtest``, the target's
RSS just before the test's connections open. Why not RSS / connections, as before: most of a
process's RSS is a fixed cost (the interpreter, modules, buffers: tens of MiB) that does not
grow with connections, so dividing all of it read 3-13 MiB "per connection" at a handful of
connections, against the few KiB to tens of KiB a connection costs (BENCHMARKS.md). Above a
baseline it is what connections added (with what they brought: subscriptions, send queues,
history of the rooms they use), which is what capacity planning needs: connections that still
fit = (memory left) / (memory per connection). A ``--workers`` node sums each worker's growth
over its own baseline and divides by all the node's connections.

It is shown to people from ``MIN_CONNECTIONS`` connections up; below, it reads ``NOT_SHOWN``.
The allocator's noise (memory freed at startup and reused, arenas grown in steps, buffers of
the first scrapes) is hundreds of KiB to a few MiB: as much as the figure itself below 100
connections. One ``wsops serve`` node with subscribed idle connections (2026-12): 34 KiB at 10
connections, 9.0 KiB at 100, 7.1 KiB at 1000 (RSS / connections: 7.0 MiB, 718 KiB, 78 KiB).
The Prometheus gauge keeps the raw figure from one connection up (0 without connections) so
its series stays continuous; a query that cares counts connections itself (the leak alert asks
for more than 10 and compares the node with itself 3 hours earlier).
"""

from __future__ import annotations

from typing import Final

MIN_CONNECTIONS: Final = 100
"""Connections from which memory per connection is shown (the fleet page's fleet.js too)."""
NOT_SHOWN: Final = f"n/a (fewer than {MIN_CONNECTIONS} connections)"


def memory_per_connection(rss: float, baseline: float, connections: int) -> float:
    """Bytes per connection of RSS above ``baseline``: 0 without connections, and 0 when RSS
    fell below its baseline (freed memory handed back, e.g. by ``malloc_trim``)."""
    if connections <= 0:
        return 0.0
    return max(0.0, rss - baseline) / connections


def shown(per_connection: float | None, connections: float | None) -> float | None:
    """The figure as people see it: None when unknown or below ``MIN_CONNECTIONS``."""
    if per_connection is None or connections is None or connections < MIN_CONNECTIONS:
        return None
    return per_connection
