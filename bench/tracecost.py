"""Instructions per call of the pieces of a traced publish, and of a histogram update in Python
against one in C, counted by callgrind (BENCHMARKS.md, seventeenth session).

    python bench/tracecost.py [--pieces NAME ...] [--tree DIR] [--json FILE]

Each piece runs in a child under ``valgrind --tool=callgrind``, in a loop inside a function,
for 30,000 and for 10,000 iterations; the figure is the difference / 20,000, so start-up
cancels out (+-100 or so). The pieces:

- ``open_publish``, ``open_fanout``, ``close_publish``, ``close_fanout``: ``Tracing``'s handle
  methods on the lean provider (a queue that never exports), one at a time;
- ``handles``: the four for one traced root publish and its fan-out on this node;
  ``handles+exemplars``: with the two exemplars the node's observer keeps; ``handles+encode``:
  with the export thread's encoding of the record (``encode_record``);
- ``clock``: two ``time.perf_counter()`` reads (the loop's own cost included);
  ``python-inline``: the same and the update the observer wrote inline before ``Counts``
  (a bisect into a list of counts, and the sum);
  ``python-observe``: one read and ``observe_since()`` of the Python ``pycounts.Counts`` (which
  reads the second); ``c-observe``: the same with the compiled ``_counting.Counts`` (skipped
  when the tree has not built it).

``--tree DIR`` counts another checkout's wsops (``git archive REV | tar -x -C DIR``) beside
this one's.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
SMALL, LARGE = 10_000, 30_000
PIECES = ["open_publish", "open_fanout", "close_publish", "close_fanout", "handles",
          "handles+exemplars", "handles+encode", "clock", "python-inline", "python-observe",
          "c-observe"]
BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]

def run_piece(piece: str, n: int) -> None:
    """The measured loop (in the child)."""
    from opentelemetry.sdk.resources import Resource

    from wsops.instrumentation import otlpwire
    from wsops.instrumentation.leanspans import LeanTracerProvider, SpanQueue, encode_record
    from wsops.instrumentation.metrics import Histogram
    from wsops.instrumentation.tracing import Tracing

    res = Resource.create({"service.name": "bench"})
    queue = SpanQueue(lambda body: None, otlpwire.resource(res.attributes), res.schema_url,
                      max_queue=LARGE + 10, batch=LARGE + 10)
    queue._thread = object()  # type: ignore[assignment]  # queued, never exported
    tracing, room, hist = Tracing(LeanTracerProvider(queue), 1.0), "chat:1", Histogram(BOUNDS)
    spans, perf = queue._spans, time.perf_counter
    close_fanout = Tracing.close_fanout
    handle = tracing.open_publish(room, None)
    if piece == "open_publish":
        for _ in range(n):
            tracing.open_publish(room, None)
    elif piece == "open_fanout":
        for _ in range(n):
            tracing.open_fanout(room, 10, handle)
    elif piece == "close_publish":
        for i in range(n):
            tracing.close_publish(handle, "epoch", i)
    elif piece == "close_fanout":
        fan = tracing.open_fanout(room, 10, handle)
        for _ in range(n):
            fan[7] = None  # open again: its publish's record not yet attached
            close_fanout(fan)
    elif piece.startswith("handles"):
        for i in range(n):
            pub = tracing.open_publish(room, None)
            fan = tracing.open_fanout(room, 10, pub)
            trace_id = tracing.close_publish(pub, "epoch", i, fan)
            fan_trace_id = close_fanout(fan)
            if piece == "handles+exemplars":
                hist.observe_traced(0.0003, trace_id)
                hist.observe_traced(0.0003, fan_trace_id, 1.0)
            elif piece == "handles+encode":
                encode_record(spans.pop()[1])
    elif piece == "clock":
        for _ in range(n):
            started = perf()
            took = perf() - started
    elif piece == "python-inline":  # NodeObserver.served before Counts
        counts, first, total = [0] * (len(BOUNDS) + 1), BOUNDS[0], 0.0
        for _ in range(n):
            started = perf()
            took = perf() - started
            counts[0 if took <= first else bisect_left(BOUNDS, took)] += 1
            total += took
    elif piece in ("python-observe", "c-observe"):
        from wsops.instrumentation import pycounts

        counts_type: Any = pycounts.Counts
        if piece == "c-observe":
            counts_type = importlib.import_module("wsops.instrumentation._counting").Counts
        observe_since = counts_type(BOUNDS).observe_since
        for _ in range(n):
            observe_since(perf())
    else:
        raise SystemExit(f"unknown piece {piece!r}")


def per_call(tree: Path, piece: str) -> int | None:
    """Instructions per call of ``piece`` with ``tree``'s wsops; None when that tree cannot
    run it (a tree from before ``Counts``, or without the compiled class)."""
    from benchprocs import callgrind_total

    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (SMALL, LARGE):
            out = Path(tmp) / f"callgrind.{n}"
            env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": os.pathsep.join(
                [str(tree), str(HERE / "bench")])}
            done = subprocess.run(["valgrind", "--tool=callgrind",
                                   f"--callgrind-out-file={out}", sys.executable, __file__,
                                   "--child", piece, str(n)],
                                  env=env, capture_output=True, text=True)
            if done.returncode != 0:
                if "ImportError" in done.stderr or "ModuleNotFoundError" in done.stderr:
                    return None
                raise SystemExit(f"{piece}: the child failed\n{done.stderr[-2000:]}")
            totals.append(callgrind_total(out))
    return (totals[1] - totals[0]) // (LARGE - SMALL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pieces", nargs="+", choices=PIECES, default=PIECES)
    parser.add_argument("--tree", type=Path, help="another checkout to count beside this one")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_piece(args.child[0], int(args.child[1]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (apt-get install valgrind)")
    trees = {"this": HERE, **({"other": args.tree.resolve()} if args.tree else {})}
    counted: dict[str, dict[str, int | None]] = {name: {} for name in trees}
    for piece in args.pieces:
        for name, tree in trees.items():
            got = counted[name][piece] = per_call(tree, piece)
            print(f"{name:6s} {piece:18s} " + (
                f"{got:>8,} instructions per call" if got is not None
                else "     n/a (not in that tree, or not built there)"), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "trees": {k: str(v) for k, v in trees.items()}, "per_call": counted}, indent=2))


if __name__ == "__main__":
    main()
