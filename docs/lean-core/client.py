# Blocking raw-socket WS clients (separate process so none of their objects are counted).
import os, socket, struct, sys, json
port, n, sub = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
REQ = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
       b"User-Agent: lean-measure/1\r\nOrigin: http://127.0.0.1\r\n\r\n")
def frame(payload):
    mask = os.urandom(4); p = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(p)]) + mask + p
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(REQ)
    buf = b""
    while b"\r\n\r\n" not in buf: buf += s.recv(4096)
    assert buf.startswith(b"HTTP/1.1 101"), buf[:80]
    if sub:
        s.sendall(frame(json.dumps({"op": "subscribe", "room": f"r{i%10}", "id": 1}).encode()))
        s.recv(4096)
    socks.append(s)
print("ready", flush=True)
sys.stdin.read()
