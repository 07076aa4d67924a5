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
  ``python-observe``: the same and the observer's inline histogram update;
  ``c-observe``: the same and ``observe()`` of a minimal C histogram type compiled here with
  ``cc`` (what compiled counting would buy; skipped when no compiler is found).

``--tree DIR`` counts another checkout's wsops (``git archive REV | tar -x -C DIR``) beside
this one's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
SMALL, LARGE = 10_000, 30_000
PIECES = ["open_publish", "open_fanout", "close_publish", "close_fanout", "handles",
          "handles+exemplars", "handles+encode", "clock", "python-observe", "c-observe"]
BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]

C_HISTOGRAM = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
typedef struct { PyObject_HEAD double bounds[32]; long long counts[33]; int n; double sum; } Hist;
static int Hist_init(Hist *self, PyObject *args, PyObject *kw) {
    PyObject *seq, *f;
    if (!PyArg_ParseTuple(args, "O", &seq) || !(f = PySequence_Fast(seq, "bounds"))) return -1;
    self->n = (int)PySequence_Fast_GET_SIZE(f);
    if (self->n > 32) {
        Py_DECREF(f); PyErr_SetString(PyExc_ValueError, "32 bounds at most"); return -1; }
    for (int i = 0; i < self->n; i++)
        self->bounds[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(f, i));
    Py_DECREF(f); memset(self->counts, 0, sizeof self->counts); self->sum = 0; return 0; }
static PyObject *Hist_observe(Hist *self, PyObject *arg) {
    double v = PyFloat_AsDouble(arg); if (v == -1.0 && PyErr_Occurred()) return NULL;
    int i = 0; while (i < self->n && v > self->bounds[i]) i++;
    self->counts[i]++; self->sum += v; Py_RETURN_NONE; }
static PyMethodDef methods[] = {{"observe", (PyCFunction)Hist_observe, METH_O, ""}, {NULL}};
static PyTypeObject HistType = { PyVarObject_HEAD_INIT(NULL, 0) .tp_name = "chist.Hist",
  .tp_basicsize = sizeof(Hist), .tp_flags = Py_TPFLAGS_DEFAULT, .tp_new = PyType_GenericNew,
  .tp_init = (initproc)Hist_init, .tp_methods = methods };
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "chist", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_chist(void) { if (PyType_Ready(&HistType) < 0) return NULL;
  PyObject *m = PyModule_Create(&mod); Py_INCREF(&HistType);
  PyModule_AddObject(m, "Hist", (PyObject *)&HistType); return m; }
"""


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
    elif piece == "python-observe":  # NodeObserver.served's inline update
        for _ in range(n):
            started = perf()
            took = perf() - started
            hist.counts[0 if took <= hist.first else hist.index(took)] += 1
            hist.sum += took
    elif piece == "c-observe":
        from chist import Hist  # type: ignore[import-not-found]

        c_hist = Hist(BOUNDS)
        for _ in range(n):
            started = perf()
            c_hist.observe(perf() - started)
    else:
        raise SystemExit(f"unknown piece {piece!r}")


def build_c_histogram(into: Path) -> bool:
    """Compile the C histogram type into ``into``; False without a compiler or headers."""
    cc = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths()["include"]
    if cc is None or not (Path(include) / "Python.h").is_file():
        return False
    src = into / "chist.c"
    src.write_text(C_HISTOGRAM)
    out = into / f"chist{sysconfig.get_config_var('EXT_SUFFIX')}"
    done = subprocess.run([cc, "-O2", "-shared", "-fPIC", f"-I{include}", str(src), "-o",
                           str(out)], capture_output=True)
    return done.returncode == 0


def per_call(tree: Path, piece: str, extra_path: Path) -> int:
    from benchprocs import callgrind_total

    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (SMALL, LARGE):
            out = Path(tmp) / f"callgrind.{n}"
            env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": os.pathsep.join(
                [str(tree), str(HERE / "bench"), str(extra_path)])}
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            sys.executable, __file__, "--child", piece, str(n)],
                           env=env, check=True, capture_output=True)
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
    counted: dict[str, dict[str, int]] = {name: {} for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        has_c = build_c_histogram(Path(tmp))
        for piece in args.pieces:
            if piece == "c-observe" and not has_c:
                print("c-observe: skipped (no C compiler or Python headers)", flush=True)
                continue
            for name, tree in trees.items():
                counted[name][piece] = per_call(tree, piece, Path(tmp))
                print(f"{name:6s} {piece:18s} {counted[name][piece]:>8,} instructions per call",
                      flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "trees": {k: str(v) for k, v in trees.items()}, "per_call": counted}, indent=2))


if __name__ == "__main__":
    main()
