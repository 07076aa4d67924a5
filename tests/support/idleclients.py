"""Idle WebSocket clients in a process of their own (so none of their objects are counted by
a memory measurement of the server): ``python -m tests.support.idleclients PORT N [ROOMS]``
opens N connections (each subscribed to one of ROOMS rooms when ROOMS > 0), prints ``ready``
and holds them until its stdin closes."""

from __future__ import annotations

import json
import socket
import sys

from tests.support.rawws import UPGRADE, client_frame


def main() -> None:
    port, n = int(sys.argv[1]), int(sys.argv[2])
    rooms = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(UPGRADE.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        assert buf.startswith(b"HTTP/1.1 101"), buf[:80]
        if rooms:
            sub = {"op": "subscribe", "room": f"r{i % rooms}", "id": 1}
            s.sendall(client_frame(json.dumps(sub).encode()))
            while b'"ok":true' not in buf:
                buf += s.recv(4096)
        socks.append(s)
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
