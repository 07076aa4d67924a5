"""The machine's floor for chat-shaped fan-out: what the sends alone cost (issue #17).

    python bench/sendfloor.py [--connections 10000 --room-size 5 --rates 2000,10000
                               --seconds 10 --json FILE]

Two processes on loopback, pinned apart when there are 2+ CPUs: a *sender* (uvloop, like
``wsops serve``) holding one end of ``--connections`` TCP connections and a *reader* holding
the other ends. The connections form rooms of ``--room-size``; for each "publish" the sender
writes one prebuilt 150-byte WebSocket text frame to every connection of a room, one
``transport.write`` each (a chat publish costs ``wsops serve`` the same: a reply to the
publisher, a message to each subscriber), round-robin over the rooms at ``--rates``
publishes/s in 5 ms ticks (as ``wsops loadtest`` paced them until 2026-12-07; it now sends
each publish at a random moment, Poisson arrivals: a burst per tick only makes this floor's
tail higher). Nothing is parsed, stored,
authorized or counted: the sender's CPU per write is the floor of the server's CPU per
delivery, and the reader's latency percentiles (a timestamp in each frame, read with uvloop
as soon as it arrives) the floor of its publish-to-delivery latency on this machine. The
inbound publish (one ``recv`` per publish on the server) is left out, so the floor is a
little low.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

FRAME_PAYLOAD = 146  # + 4 header bytes: a 150-byte frame, a chat message's size here


def frame(stamp: float) -> bytes:
    body = b'{"t":%.6f,"pad":"' % stamp
    body += b"x" * (FRAME_PAYLOAD - len(body) - 2) + b'"}'
    return bytes((0x81, 126)) + len(body).to_bytes(2, "big") + body


def pct(xs: list[float], q: float) -> float:
    """Percentile ``q`` of sorted seconds ``xs``, in ms."""
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3 if xs else 0.0


def pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def sender(connections: int, room_size: int, rates: list[int], seconds: float,
           cpu: int | None, pipe: Connection) -> None:
    import uvloop

    pin(cpu)
    transports: list[asyncio.WriteTransport] = []
    accepted = asyncio.Event()

    class Quiet(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transports.append(transport)  # type: ignore[arg-type]
            if len(transports) == connections:
                accepted.set()

        def data_received(self, data: bytes) -> None:
            pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Quiet, "127.0.0.1", 0, backlog=4096)
        pipe.send(server.sockets[0].getsockname()[1])
        await accepted.wait()
        rooms = [transports[i:i + room_size] for i in range(0, len(transports), room_size)]
        pipe.send("ready")
        for rate in rates:
            pipe.recv()  # the reader is ready for this rate
            t0 = time.process_time()
            start = time.monotonic()
            sent = k = 0
            while (now := time.monotonic()) - start < seconds:
                due = int(rate * (now - start)) - sent
                for _ in range(due):
                    data = frame(time.time())
                    for tr in rooms[k % len(rooms)]:
                        tr.write(data)
                    k += 1
                sent += max(0, due)
                await asyncio.sleep(0.005)
            cpu_s = time.process_time() - t0
            pipe.send({"rate": rate, "publishes": sent, "writes": sent * room_size,
                       "cpu_seconds": cpu_s, "seconds": time.monotonic() - start})
        pipe.recv()

    uvloop.run(main())


def reader(port: int, connections: int, rates: list[int], seconds: float, cpu: int | None,
           pipe: Connection) -> None:
    import uvloop

    pin(cpu)
    latencies: list[float] = []

    class Reading(asyncio.Protocol):
        def __init__(self) -> None:
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            now = time.time()
            buf = self.buf + data
            while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[2:4], "big"):
                n = 4 + int.from_bytes(buf[2:4], "big")
                stamp = float(buf[9:buf.index(b",", 9)])
                latencies.append(now - stamp)
                buf = buf[n:]
            self.buf = buf

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(200)

        async def one() -> None:
            async with gate:
                await loop.create_connection(Reading, "127.0.0.1", port)

        await asyncio.gather(*(one() for _ in range(connections)))
        pipe.send("ready")
        for _ in rates:
            latencies.clear()
            pipe.recv()
            await asyncio.sleep(seconds + 1.0)
            xs = sorted(latencies)
            pipe.send({"received": len(xs), "p50_ms": pct(xs, 0.5), "p99_ms": pct(xs, 0.99),
                       "p999_ms": pct(xs, 0.999), "max_ms": xs[-1] * 1e3 if xs else 0.0})

    uvloop.run(main())


def run(args: argparse.Namespace) -> dict[str, Any]:
    rates = [int(r) for r in args.rates.split(",")]
    cpus = sorted(os.sched_getaffinity(0))
    send_cpu, read_cpu = (cpus[-1], cpus[0]) if len(cpus) >= 2 else (None, None)
    to_sender, sender_end = Pipe()
    to_reader, reader_end = Pipe()
    ps = Process(target=sender, args=(args.connections, args.room_size, rates, args.seconds,
                                      send_cpu, sender_end))
    ps.start()
    port = to_sender.recv()
    pr = Process(target=reader, args=(port, args.connections, rates, args.seconds, read_cpu,
                                      reader_end))
    pr.start()
    assert to_reader.recv() == "ready" and to_sender.recv() == "ready"
    out = []
    for _ in rates:
        to_reader.send("go")
        to_sender.send("go")
        sent = to_sender.recv()
        got = to_reader.recv()
        row = {**sent, **got,
               "us_cpu_per_write": sent["cpu_seconds"] / max(1, sent["writes"]) * 1e6,
               "lost": sent["writes"] - got["received"]}
        out.append(row)
        print(f"{row['rate']:>6,} publishes/s ({row['writes'] / row['seconds']:,.0f} writes/s): "
              f"sender {row['us_cpu_per_write']:.2f} us CPU per write; latency p50 "
              f"{row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f}, p99.9 {row['p999_ms']:.2f}, "
              f"max {row['max_ms']:.2f}; {row['lost']} not received", flush=True)
    to_sender.send("stop")
    ps.join(10)
    pr.join(10)
    for p in (ps, pr):
        if p.is_alive():
            p.kill()
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "connections": args.connections, "room_size": args.room_size,
            "pinned": send_cpu is not None, "python": sys.version.split()[0], "rates": out,
            "median_us_cpu_per_write": statistics.median(r["us_cpu_per_write"] for r in out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--room-size", type=int, default=5)
    parser.add_argument("--rates", default="2000,10000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.connections % args.room_size:
        parser.error("--connections must be a multiple of --room-size")
    result = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")

if __name__ == "__main__":
    main()
