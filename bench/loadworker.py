"""A subscriber worker process: a ``SubscriberPool`` driven by JSON lines on stdin.

``python bench/loadworker.py --port P --subscribers N`` opens nothing until told; each command
line gets one answer line on stdout (see ``Worker``). ``bench/fanout.py`` runs one or more of
these so the subscribers never share a process with the server or the publisher.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from wsload import DIALECTS, SubscriberPool


def room_frames(template: str, per_room: int, first: int) -> Callable[[int], bytes]:
    """Subscriber ``k``'s first frame: ``template`` with ``{room}`` replaced by
    ``room-<(first + k) // per_room>``."""

    def frame(k: int) -> bytes:
        return template.replace("{room}", f"room-{(first + k) // per_room}").encode()

    return frame


class Worker:
    """Serves a ``SubscriberPool`` over JSON lines: one command in, one answer out.

    Commands: ``{"cmd": "open", "subscribe": str|null}`` (optional ``"n"``: open that many
    instead of ``--subscribers``, the pool keeps those it has; ``"per_room": K, "first": F``:
    subscriber ``k`` of this call sends ``subscribe`` with ``{room}`` replaced by
    ``room-<(F + k) // K>``), ``{"cmd": "settle"}``,
    ``{"cmd": "arm", "latency": bool}``, ``{"cmd": "wait", "each": N, "time_limit": S}``,
    ``{"cmd": "latency"}`` (the histogram since ``arm``, ``Latencies.to_wire``),
    ``{"cmd": "close"}``.
    """

    def __init__(self, pool: SubscriberPool, n: int) -> None:
        self.pool = pool
        self.n = n

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        name = cmd.get("cmd")
        pool = self.pool
        if name == "open":
            sub = cmd.get("subscribe")
            subscribe: bytes | Callable[[int], bytes] | None = sub.encode() if sub else None
            if sub and cmd.get("per_room"):
                subscribe = room_frames(sub, int(cmd["per_room"]), int(cmd.get("first", 0)))
            t0 = time.monotonic()
            await pool.open(int(cmd.get("n", self.n)), subscribe,
                            time_limit=float(cmd.get("time_limit", 60.0)))
            return {"opened": len(pool.conns), "seconds": time.monotonic() - t0,
                    "failures": pool.failures[:5], "failure_count": len(pool.failures)}
        if name == "settle":
            total = await pool.settle(float(cmd.get("quiet", 0.3)),
                                      float(cmd.get("time_limit", 30.0)))
            return {"total": total}
        if name == "arm":
            pool.arm(bool(cmd.get("latency", False)))
            return {"armed": pool.tally.total}
        if name == "latency":
            return pool.latencies.to_wire()
        if name == "wait":
            return await pool.wait_each(int(cmd["each"]), float(cmd.get("time_limit", 30.0)))
        if name == "close":
            await pool.close()
            return {"closed": True}
        return {"error": f"unknown command {name!r}"}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            while line := await reader.readline():
                cmd = json.loads(line)
                answer = await self.handle(cmd)
                sys.stdout.write(json.dumps(answer) + "\n")
                sys.stdout.flush()
                if cmd.get("cmd") == "close":
                    break
        finally:
            await self.pool.close(time_limit=1.0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="loadworker.py", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws")
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--dialect", choices=DIALECTS, default="raw",
                        help="socketio: Engine.IO v4 WebSocket transport (use its --path)")
    args = parser.parse_args(argv)
    worker = Worker(SubscriberPool(args.host, args.port, args.path, args.dialect),
                    args.subscribers)
    try:
        import uvloop
    except ImportError:
        asyncio.run(worker.serve())
    else:
        uvloop.run(worker.serve())


if __name__ == "__main__":
    main()
