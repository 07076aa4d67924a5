# Prototype of design (a): aiohttp parses the upgrade request, the handler writes the 101 itself and
# hands the transport to a LeanConn (asyncio.Protocol); RequestHandler, parser, request, task go away.
import asyncio, base64, gc, hashlib, os, struct, subprocess, sys, weakref
from aiohttp import web
from aiohttp._websocket.mask import _websocket_mask_cython as MASK
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONNS = {}
class LeanConn(asyncio.Protocol):
    __slots__ = ("transport", "rbuf", "rooms", "last_rx", "ping_at", "id", "__weakref__")
    def __init__(self, transport, cid):
        self.transport = transport; self.rbuf = b""; self.rooms = None; self.last_rx = 0.0; self.ping_at = 0.0; self.id = cid
    # the "parser" duck type for RequestHandler.set_parser(): receives the bytes that followed the request
    def feed_data(self, data):
        self.data_received(data); return False, b""
    def feed_eof(self):  # RequestHandler.connection_lost() calls it on its payload parser
        pass
    def data_received(self, data):
        buf = self.rbuf + data if self.rbuf else data
        pos, end = 0, len(buf)
        while end - pos >= 6:
            b0, b1 = buf[pos], buf[pos + 1]; n = b1 & 0x7F; h = pos + 2
            if n == 126:
                if end - pos < 8: break
                n = (buf[h] << 8) | buf[h + 1]; h += 2
            if end - h < 4 + n: break
            p = bytearray(buf[h + 4:h + 4 + n]); MASK(buf[h:h + 4], p); pos = h + 4 + n
            op = b0 & 0xF
            if op == 1: self.transport.write(bytes([0x81, len(p)]) + p)  # echo
            elif op == 8: self.transport.write(b"\x88\x02" + bytes(p[:2])); self.transport.close(); break
        self.rbuf = buf[pos:] if pos < end else b""
    def connection_lost(self, exc):
        CONNS.pop(self.id, None); self.transport = None

class Handoff(web.StreamResponse):
    """What the handler returns after the handoff: aiohttp must write nothing more."""
    def __init__(self): super().__init__(status=101); self.force_close()
    async def prepare(self, request): return None
    async def write_eof(self, data=b""): return None

async def ws_handler(request):
    h = request.headers
    key = h.get("Sec-WebSocket-Key", "")
    if h.get("Upgrade", "").lower() != "websocket" or not request._message.upgrade or h.get("Sec-WebSocket-Version") != "13":
        raise web.HTTPBadRequest()
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
    proto = request.protocol; tr = request.transport
    conn = LeanConn(tr, len(CONNS) + 1)
    tr.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    tr.set_protocol(conn)          # from now on the transport calls conn
    proto.set_parser(conn)         # the bytes aiohttp buffered after the request (tail) -> conn
    proto.transport = None         # RequestHandler must not close the transport
    proto.connection_lost(None)    # RequestHandler forgets the connection (keep-alive timer, Server._connections)
    CONNS[conn.id] = conn
    return Handoff()

async def main():
    app = web.Application(); app.router.add_get("/ws", ws_handler)
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start(); port = runner.addresses[0][1]
    # correctness: a frame sent in the same packet as the upgrade request is served (the tail)
    r, w = await asyncio.open_connection("127.0.0.1", port)
    mask = os.urandom(4); p = bytearray(b"hello"); MASK(mask, p)
    w.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            + bytes([0x81, 0x85]) + mask + bytes(p))
    head = await r.readuntil(b"\r\n\r\n"); echo = await r.readexactly(7)
    print("101:", head.split(b"\r\n")[0], "echo of the tail frame:", echo)
    mask = os.urandom(4); p = bytearray(b"again"); MASK(mask, p); w.write(bytes([0x81, 0x85]) + mask + bytes(p))
    print("echo after handoff:", await r.readexactly(7))
    await asyncio.sleep(0.05); gc.collect()
    print("aiohttp Server._connections after handoff:", len(runner.server._connections),
          "RequestHandler objects alive:", sum(type(o).__name__ == "RequestHandler" for o in gc.get_objects()),
          "tasks:", len(asyncio.all_tasks()))
    mask = os.urandom(4); p = bytearray(struct.pack("!H", 1000)); MASK(mask, p); w.write(bytes([0x88, 0x82]) + mask + bytes(p))
    print("close echo:", await r.read(), "conns left", len(CONNS)); w.close()
    # memory: 300 idle connections
    gc.collect(); keep = gc.get_objects(); before = {id(o) for o in keep}
    import tracemalloc; tracemalloc.start(); m0 = tracemalloc.get_traced_memory()[0]
    pr = subprocess.Popen([sys.executable, "client.py", str(port), "300", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await asyncio.get_running_loop().run_in_executor(None, pr.stdout.readline); await asyncio.sleep(0.5); gc.collect()
    m1 = tracemalloc.get_traced_memory()[0]
    snap = tracemalloc.take_snapshot(); tracemalloc.stop()
    print(f"handoff: traced bytes per idle connection {(m1 - m0) / 300:.0f}; open {len(CONNS)}; aiohttp connections {len(runner.server._connections)}")
    for st in snap.statistics("lineno")[:8]:
        if st.size / 300 > 8: print(f"   {st.traceback[0].filename.split('/')[-1]}:{st.traceback[0].lineno} {st.size / 300:.0f} B")
    pr.stdin.close(); pr.wait(); await asyncio.sleep(0.2)
    print("after peers left: conns", len(CONNS)); await runner.cleanup()
if __name__ == "__main__":
    asyncio.run(main())
