# Retained size of one idle upgraded connection, split by component (first root claims an object).
import asyncio, gc, subprocess, sys, types as T, tracemalloc
from aiohttp import web
MODE = sys.argv[1]
SKIP = (T.ModuleType, type, asyncio.AbstractEventLoop)
BOUND = set()

def deep(root, seen, before):
    total, stack = 0, [root]
    while stack:
        o = stack.pop()
        i = id(o)
        if i in seen or i in before or isinstance(o, SKIP) or (i in BOUND and o is not root): continue
        seen.add(i); total += sys.getsizeof(o)
        stack.extend(gc.get_referents(o))
    return total

async def main():
    if MODE == "naive":
        async def h(request):
            ws = web.WebSocketResponse(heartbeat=30.0, compress=False)
            await ws.prepare(request)
            async for msg in ws: pass
            return ws
        app = web.Application(); app.router.add_get("/ws", h)
        runner = web.AppRunner(app, access_log=None); await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start(); port = runner.addresses[0][1]
    else:
        from wsops.config import Settings
        from wsops.server.app import running, NODE_KEY
        cm = running(Settings(host="127.0.0.1", port=0, admin_port=None, allow_anonymous=True,
                              instrument=True, heartbeat=30.0))
        app, runner, port = await cm.__aenter__()
    sub = "0" if MODE == "naive" else "1"
    run = asyncio.get_running_loop().run_in_executor
    w = subprocess.Popen([sys.executable, "client.py", str(port), "3", sub], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await run(None, w.stdout.readline); await asyncio.sleep(0.3)
    gc.collect(); keep = gc.get_objects()
    before = {id(o) for o in keep}
    for o in keep:
        for r in gc.get_referents(o): before.add(id(r))
    before.add(id(keep))
    p = subprocess.Popen([sys.executable, "client.py", str(port), "1", sub], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await run(None, p.stdout.readline); await asyncio.sleep(0.3); gc.collect()
    rh = [h for h in runner.server._connections if id(h) not in before][0]
    req_task = [t for t in asyncio.all_tasks() if id(t) not in before and t is not rh._task_handler][0]
    # the handler coroutine chain: _handle_request -> middlewares -> handler -> serve_connection
    frames, cr = [], req_task.get_coro()
    while cr is not None:
        frames.append(cr); cr = getattr(cr, "cr_await", None)
        if cr is not None and not hasattr(cr, "cr_frame"): frames.append(cr); break
    req = req_task.get_coro().cr_frame.f_locals["request"]
    ws = None
    for f in frames:
        fr = getattr(f, "cr_frame", None)
        if fr is not None:
            for v in fr.f_locals.values():
                if isinstance(v, web.WebSocketResponse): ws = v
    seen = set(); rows = []
    tr = rh.transport
    BOUND.update(map(id, [tr, ws, req, req_task, rh, ws._parser, ws._reader, ws._writer, req._message, *frames]))
    def part(name, *roots):
        rows.append((name, sum(deep(r, seen, before) for r in roots)))
    part("transport + socket (floor)", tr)
    if MODE != "naive":
        node = app[NODE_KEY]; conn = [c for c in node.hub.conns.values() if id(c) not in before][0]
        live = req.get(__import__('wsops.instrumentation.middleware', fromlist=['x']).LIVE_KEY)
        BOUND.update(map(id, [conn, live]))
        sess = None
        for f in frames:
            fr = getattr(f, 'cr_frame', None)
            if fr is not None and 'session' in fr.f_locals: sess = fr.f_locals['session']
        BOUND.add(id(sess))
        part("hub Conn (+rooms set, buf list, closer lambda)", conn)
        part("Session (+TokenBucket, Identity, present set)", sess)
        part("LiveConn", live)
    part("ws._parser WebSocketReader", ws._parser)
    part("ws._reader WebSocketDataQueue (deque, waiter fut)", ws._reader)
    part("ws._writer WebSocketWriter (Lock, set, partial)", ws._writer)
    part("ws heartbeat TimerHandle(s)", *[h for h in (ws._heartbeat_cb, ws._pong_response_cb) if h])
    part("ws response headers CIMultiDict + rest of ws", ws)
    m = req._message
    part(f"request._message.headers CIMultiDictProxy ({len(m.headers)} headers)", m.headers)
    part("request._message.raw_headers tuple", m.raw_headers)
    part("request._message.url yarl.URL", m.url)
    part("request._message RawRequestMessage rest", m)
    part("request (Request, match_info, state, payload writer)", req)
    for f in frames:
        part(f"frame {getattr(f, '__qualname__', type(f).__name__)}", f)
    part("request task (Task, Context)", req_task)
    for nm in ("_parser", "_messages", "_task_handler", "_cache", "_message_tail", "_payload_parser"):
        part(f"RequestHandler.{nm} ({type(getattr(rh, nm)).__name__})", getattr(rh, nm))
    part("RequestHandler itself + rest", rh)
    BOUND.clear()
    rows.append(("other reachable from the connection's objects (closures via ws.__dict__, room entries...)", sum(deep(o, seen, before) for o in [tr, ws, req, rh])))
    gc.collect(); allnew = [o for o in gc.get_objects() if id(o) not in before and id(o) not in seen and o is not keep]
    tot = sum(b for _, b in rows)
    print(f"{MODE}: one idle connection, deep getsizeof, total {tot} B")
    for n, b in rows: print(f"  {b:6d}  {n}")
    ty = {}
    for o in allnew:
        k = type(o).__qualname__; ty[k] = ty.get(k, 0) + 1
    print("  unreached new gc objects:", sorted(ty.items(), key=lambda x: -x[1])[:15])
    p.stdin.close(); w.stdin.close(); p.wait(); w.wait()
asyncio.run(main())
