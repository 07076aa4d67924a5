"""Instructions per publish frame on the bundled core, counted by callgrind: a ``Session``
serving publish frames into a room of 10 subscribers on the memory broker, with the node's
observer (and its debug switch where the tree has one). No sockets, no frame parsing: the
core's own per-request work, repeatable to a few instructions whatever else the machine does.

The figure is (instructions for 3,000 frames - for 1,000) / 2,000, so start-up cancels out.
``--tree DIR`` runs another checkout's wsops (``git archive REV | tar -x -C DIR``) beside this
one's, in the same run:

    python bench/corecost.py --tree /tmp/wsops-base

``--bare`` counts the core without the node's observer (``wsops serve --no-instrument``), so
the difference to a run without it is the metrics' own work per publish.

``--trace-ratio R`` traces that share of the publishes with the tree's own provider from the
environment, exporting over OTLP/HTTP to ``otlpsink.py`` (started here, outside callgrind): the
spans' whole cost, their export thread included (flushed before the count ends; a queue large
enough that nothing is dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
SMALL, LARGE = 1000, 3000


class _Sink:
    def write(self, data: bytes) -> None: ...

    def writelines(self, data: list[bytes]) -> None: ...

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None: ...


async def serve_frames(n: int, ratio: float | None = None, bare: bool = False) -> None:
    """The measured work: ``n`` publish frames through one session (run in the child)."""
    from wsops.instrumentation.metrics import WsMetrics
    from wsops.server.broker.memory import MemoryBroker
    from wsops.server.core.hub import Conn, Hub
    from wsops.server.core.identity import Identity
    from wsops.server.core.session import Session
    from wsops.server.observe import NodeObserver

    metrics = WsMetrics()
    tracing = None
    if ratio is not None:
        from wsops.instrumentation.tracing import Tracing

        try:
            from wsops.instrumentation.tracesetup import provider_from_env
        except ImportError:  # a tree from before the split
            from wsops.instrumentation.tracing import provider_from_env  # type: ignore

        tracing = Tracing(provider_from_env(), ratio)
    observer = None if bare else NodeObserver(metrics, metrics.route("/ws"), tracing)
    hub = Hub(observer=observer)
    broker = MemoryBroker()
    broker.listener = hub
    await broker.watch("r")  # the node watches a room it has subscribers in: fan-out follows
    conns = []
    for i in range(10):
        conn = Conn(hub, hub.new_id(), f"u{i}", _Sink(), lambda *_: None, 1 << 20)
        hub.add(conn)
        hub.join_room(conn, "r")
        hub.finish_sync(conn, "r", 0, "")
        conns.append(conn)
    kw: dict[str, Any] = {}
    try:
        from wsops.server.debug import DebugSwitch  # the node always passes its switch

        kw["debug"] = DebugSwitch(hub, None)
    except ImportError:  # a tree from before the debug switch
        pass
    # a tree whose sessions publish wrapped
    if observer is not None and not hasattr(observer, "publish_started"):
        kw["publish"] = observer.wrap_publish(broker.publish)
    session = Session(conns[0], Identity("u0", ("*",)), hub, broker, max_rooms=8, rate=1e9,
                      burst=10**9, strikes=3, observer=observer, **kw)
    frames = [json.dumps({"op": "publish", "id": i, "room": "r", "data": {"t": "hi"}})
              for i in range(n)]
    for frame in frames:
        await session.handle(frame)
        if len(hub._dirty) > 50:  # end of a tick, every ~50 publishes as under load
            hub.flush()
    hub.flush()
    if tracing is not None:
        tracing.shutdown()  # every span exported before the count ends


def instructions(tree: Path, n: int, ratio: float | None = None, sink: str = "",
                 bare: bool = False) -> int:
    """Callgrind's total for a child serving ``n`` frames with ``tree``'s wsops."""
    from benchprocs import callgrind_total

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{HERE / 'bench'}",
               "PYTHONSAFEPATH": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
               "OTEL_BSP_MAX_QUEUE_SIZE": str(4 * LARGE)}
        traced = [] if ratio is None else ["--child-ratio", str(ratio)]
        if bare:
            traced.append("--child-bare")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, __file__, "--child", str(n), *traced],
                       env=env, check=True, capture_output=True)
        return callgrind_total(out)


def per_frame(tree: Path, ratio: float | None = None, sink: str = "", bare: bool = False
              ) -> int:
    return (instructions(tree, LARGE, ratio, sink, bare)
            - instructions(tree, SMALL, ratio, sink, bare)) // (LARGE - SMALL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tree", type=Path, help="another checkout to count beside this one")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--trace-ratio", type=float, metavar="R",
                        help="trace this share of the publishes (0-1), exported to a sink")
    parser.add_argument("--bare", action="store_true",
                        help="without the node's observer (no metrics, no spans)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-ratio", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        asyncio.run(serve_frames(args.child, args.child_ratio, args.child_bare))
        return
    if args.bare and args.trace_ratio is not None:
        parser.error("--bare has no spans: leave out --trace-ratio")
    if args.trace_ratio is not None and not 0 <= args.trace_ratio <= 1:
        parser.error("--trace-ratio must be within [0, 1]")
    trees = {"this": HERE, **({"other": args.tree.resolve()} if args.tree else {})}
    with contextlib.ExitStack() as stack:
        sink = ""
        if args.trace_ratio is not None:
            sink = stack.enter_context(otlp_sink())
        with ThreadPoolExecutor(len(trees)) as pool:  # callgrind counts, whatever runs beside
            counted = dict(zip(trees, pool.map(
                lambda tree: per_frame(tree, args.trace_ratio, sink, args.bare),
                trees.values()),
                strict=True))
    for name, tree in trees.items():
        print(f"{name:6s} {tree}: {counted[name]:,} instructions per publish frame")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "trees": {k: str(v) for k, v in trees.items()}, "trace_ratio": args.trace_ratio,
            "bare": args.bare,
            "per_frame": counted}, indent=2))


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    """``otlpsink.py`` on a free port for the run; yields its endpoint."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(HERE / "bench" / "otlpsink.py"), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{endpoint}/healthz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("otlpsink.py did not start")
        yield endpoint
        with urllib.request.urlopen(f"{endpoint}/stats", timeout=5) as r:
            print(f"sink received: {r.read().decode()}")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
