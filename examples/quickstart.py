"""Start ``wsops serve`` on the embedded default broker and talk to it with the Python client.

    python examples/quickstart.py

Shows rooms, publish acks, presence, history, and what the client does when the node restarts:
it is drained with 1012, the client reconnects by itself, and because the embedded broker's
history died with the process the client reports an explicit gap instead of a silent one.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from wsops.client import Client, ClientState, Gap, Message, PresenceEvent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, admin_port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "wsops", "serve", "--allow-anonymous",
           "--port", str(port), "--admin-port", str(admin_port), "--drain-interval", "0.1"]
    print("$", " ".join(["wsops", *cmd[3:]]))
    proc = subprocess.Popen(cmd)
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


async def main() -> None:
    port, admin_port = free_port(), free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    server = start_server(port, admin_port)
    try:
        async with Client(url, backoff_base=0.1, backoff_cap=1.0) as alice, \
                Client(url) as bob:

            async def show() -> None:
                async for event in alice.events():
                    if isinstance(event, Message):
                        # sender: who published it, as the server knows them (an anonymous
                        # connection's id here; a token's sub with tokens): no client can forge it
                        print(f"alice <- {event.room}#{event.offset} from {event.sender}: "
                              f"{event.data}")
                    elif isinstance(event, Gap):
                        print(f"alice !! gap in {event.room}: history restarted (epoch changed)")
                    elif isinstance(event, PresenceEvent):
                        print(f"alice .. {event.user} {event.kind}s {event.room}")

            printer = asyncio.create_task(show())
            await alice.subscribe("chat:lobby", presence=True)
            for text in ("hello", "how is the fleet?", "all green"):
                ack = await bob.publish("chat:lobby", {"text": text})
                print(f"bob   -> published at offset {ack.offset}")
            await asyncio.sleep(0.2)
            print("presence:", await alice.presence("chat:lobby"))
            print("history :", [m.data["text"] for m in await alice.history("chat:lobby", 2)])

            print("\nrestarting the node: SIGTERM drains it (clients see 1012)")
            server.send_signal(signal.SIGTERM)
            # Waited for off the event loop: the clients answer the server's close meanwhile
            # (a blocked loop would leave the node waiting 5 s for their answers).
            await asyncio.to_thread(server.wait, 10)
            server = start_server(port, admin_port)
            await alice.wait_for_state(ClientState.OPEN, 10)
            await bob.wait_for_state(ClientState.OPEN, 10)
            await asyncio.sleep(0.3)
            ack = await bob.publish("chat:lobby", {"text": "back again"})
            print(f"bob   -> published at offset {ack.offset}")
            await asyncio.sleep(0.3)
            print("alice's connections ended with close codes", alice.close_codes)
            printer.cancel()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
