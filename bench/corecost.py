"""Instructions per publish frame on the bundled core, counted by callgrind: a ``Session``
serving publish frames into a room of 10 subscribers on the memory broker, with the node's
observer (and its debug switch where the tree has one). No sockets, no frame parsing: the
core's own per-request work, repeatable to a few instructions whatever else the machine does.

The figure is (instructions for 3,000 frames - for 1,000) / 2,000, so start-up cancels out.
``--tree DIR`` runs another checkout's wsops (``git archive REV | tar -x -C DIR``) beside this
one's, in the same run:

    python bench/corecost.py --tree /tmp/wsops-base
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
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


async def serve_frames(n: int) -> None:
    """The measured work: ``n`` publish frames through one session (run in the child)."""
    from wsops.instrumentation.metrics import WsMetrics
    from wsops.server.broker.memory import MemoryBroker
    from wsops.server.core.hub import Conn, Hub
    from wsops.server.core.identity import Identity
    from wsops.server.core.session import Session
    from wsops.server.observe import NodeObserver

    metrics = WsMetrics()
    observer = NodeObserver(metrics, metrics.route("/ws"), None)
    hub = Hub(observer=observer)
    broker = MemoryBroker()
    broker.listener = hub
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
    session = Session(conns[0], Identity("u0", ("*",)), hub, broker, max_rooms=8, rate=1e9,
                      burst=10**9, strikes=3, observer=observer,
                      publish=observer.wrap_publish(broker.publish), **kw)
    frames = [json.dumps({"op": "publish", "id": i, "room": "r", "data": {"t": "hi"}})
              for i in range(n)]
    for frame in frames:
        await session.handle(frame)
        if len(hub._dirty) > 50:  # end of a tick, every ~50 publishes as under load
            hub.flush()


def instructions(tree: Path, n: int) -> int:
    """Callgrind's total for a child serving ``n`` frames with ``tree``'s wsops."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{HERE / 'bench'}",
               "PYTHONSAFEPATH": "1"}
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, __file__, "--child", str(n)],
                       env=env, check=True, capture_output=True)
        text = subprocess.run(["callgrind_annotate", str(out)], capture_output=True,
                              text=True, check=True).stdout
    m = re.search(r"([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", text) or re.search(
        r"([\d,]+)\s+PROGRAM TOTALS", text)
    if m is None:
        raise SystemExit("callgrind_annotate printed no total")
    return int(m.group(1).replace(",", ""))


def per_frame(tree: Path) -> int:
    return (instructions(tree, LARGE) - instructions(tree, SMALL)) // (LARGE - SMALL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tree", type=Path, help="another checkout to count beside this one")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        asyncio.run(serve_frames(args.child))
        return
    trees = {"this": HERE, **({"other": args.tree.resolve()} if args.tree else {})}
    with ThreadPoolExecutor(len(trees)) as pool:  # callgrind counts, whatever runs beside it
        counted = dict(zip(trees, pool.map(per_frame, trees.values()), strict=True))
    for name, tree in trees.items():
        print(f"{name:6s} {tree}: {counted[name]:,} instructions per publish frame")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "trees": {k: str(v) for k, v in trees.items()}, "per_frame": counted}, indent=2))


if __name__ == "__main__":
    main()
