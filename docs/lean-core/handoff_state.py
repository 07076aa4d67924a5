# handoff.py + today's per-connection hub state (Conn, Session, Identity, a room subscription) and
# instrumentation fields in the protocol object: what a lean bundled connection would hold.
import asyncio, gc, subprocess, sys, tracemalloc
from aiohttp import web
import handoff
from wsops.server.core.hub import Conn, Hub
from wsops.server.core.session import Session
from wsops.server.core.identity import Identity
from wsops.server.broker.memory import MemoryBroker
hub = Hub(); broker = MemoryBroker(100, 60.0); broker.listener = hub
class Lean(handoff.LeanConn):
    __slots__ = ("conn", "session", "opened_at", "handled_at", "span", "close_code", "peer_closed", "stats", "hb_bucket", "rx")
async def handler(request):
    resp = await handoff.ws_handler(request)
    lean = handoff.CONNS[max(handoff.CONNS)]
    lc = Lean.__new__(Lean)
    for s in handoff.LeanConn.__slots__[:-1]: setattr(lc, s, getattr(lean, s))
    lean.transport.set_protocol(lc); handoff.CONNS[lc.id] = lc
    ident = Identity(user=f"anon-{lc.id}", rooms=("*",), anonymous=True)
    conn = Conn(hub, hub.new_id(), ident.user, lc.transport, lc.transport.close, 1 << 20)
    sess = Session(conn, ident, hub, broker, max_rooms=50, rate=50.0, burst=100, strikes=3)
    lc.conn, lc.session = conn, sess
    lc.opened_at = lc.handled_at = 0.0; lc.span = None; lc.close_code = None; lc.peer_closed = False; lc.stats = None; lc.rx = False
    hub.add(conn); room = f"r{lc.id % 10}"; hub.join_room(conn, room); hub.finish_sync(conn, room, 0, "e")
    WHEEL[lc.id % 80][lc] = None; lc.hb_bucket = WHEEL[lc.id % 80]
    return resp
WHEEL = [{} for _ in range(80)]
async def main():
    app = web.Application(); app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start(); port = runner.addresses[0][1]
    run = asyncio.get_running_loop().run_in_executor
    w = subprocess.Popen([sys.executable, "client.py", str(port), "20", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await run(None, w.stdout.readline); await asyncio.sleep(0.2)
    gc.collect(); g0 = len(gc.get_objects()); tracemalloc.start(); m0 = tracemalloc.get_traced_memory()[0]
    p = subprocess.Popen([sys.executable, "client.py", str(port), "300", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await run(None, p.stdout.readline); await asyncio.sleep(0.5); gc.collect()
    m1 = tracemalloc.get_traced_memory()[0]; tracemalloc.stop(); gc.collect(); g1 = len(gc.get_objects())
    print(f"handoff + hub state: traced bytes per idle subscribed connection {(m1 - m0) / 300:.0f}; "
          f"gc-tracked objects per connection {(g1 - g0) / 300:.1f}; aiohttp connections {len(runner.server._connections)}")
    p.stdin.close(); w.stdin.close(); p.wait(); w.wait()
asyncio.run(main())
