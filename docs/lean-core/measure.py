import asyncio, gc, subprocess, sys, time, tracemalloc, collections
from aiohttp import web
N = int(sys.argv[2]) if len(sys.argv) > 2 else 300
MODE = sys.argv[1]  # naive | bundled

def types():
    c = collections.Counter(); s = collections.Counter()
    for o in gc.get_objects():
        t = type(o); k = f"{t.__module__}.{t.__qualname__}"; c[k] += 1; s[k] += sys.getsizeof(o)
    return c, s

async def naive_app():
    async def h(request):
        ws = web.WebSocketResponse(heartbeat=30.0, compress=False)
        await ws.prepare(request)
        async for msg in ws: pass
        return ws
    app = web.Application(); app.router.add_get("/ws", h)
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0); await site.start()
    return runner, runner.addresses[0][1]

async def main():
    if MODE == "naive":
        runner, port = await naive_app(); cm = None
    else:
        from wsops.config import Settings
        from wsops.server.app import running
        st = Settings(host="127.0.0.1", port=0, admin_port=None, allow_anonymous=True,
                      instrument=(MODE == "bundled"), heartbeat=30.0)
        cm = running(st); app, runner, port = await cm.__aenter__()
    # warm up: one connection through every path so first-use caches are not counted
    w = subprocess.Popen([sys.executable, "client.py", str(port), "2", "1" if MODE != "naive" else "0"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await asyncio.get_running_loop().run_in_executor(None, w.stdout.readline)
    await asyncio.sleep(0.3)
    gc.collect(); c0, s0 = types(); gc.collect(); tracemalloc.start(1)
    t0 = tracemalloc.take_snapshot(); m0 = tracemalloc.get_traced_memory()[0]
    p = subprocess.Popen([sys.executable, "client.py", str(port), str(N), "1" if MODE != "naive" else "0"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await asyncio.get_running_loop().run_in_executor(None, p.stdout.readline)
    await asyncio.sleep(0.5)
    gc.collect(); m1 = tracemalloc.get_traced_memory()[0]
    t1 = tracemalloc.take_snapshot(); tracemalloc.stop(); c1, s1 = types()
    print(f"{MODE}: traced bytes per connection {(m1 - m0) / N:.0f}; gc objects per connection {(sum(c1.values()) - sum(c0.values())) / N:.1f}")
    print("-- GC-tracked objects per connection (count, getsizeof bytes) --")
    rows = [(k, (c1[k] - c0[k]) / N, (s1[k] - s0[k]) / N) for k in c1]
    for k, n, b in sorted(rows, key=lambda r: -r[2])[:40]:
        if n >= 0.5: print(f"  {k:60s} {n:5.1f} {b:7.0f}")
    print("-- tracemalloc by allocating file (bytes/conn) --")
    for st in t1.compare_to(t0, "filename")[:25]:
        if st.size_diff / N >= 16: print(f"  {st.traceback[0].filename.split('site-packages/')[-1]:70s} {st.size_diff / N:7.0f}")
    print("-- by line (top 30) --")
    for st in t1.compare_to(t0, "lineno")[:30]:
        fr = st.traceback[0]
        if st.size_diff / N >= 16: print(f"  {fr.filename.split('site-packages/')[-1]}:{fr.lineno:<5d} {st.size_diff / N:7.0f}")
    p.stdin.close(); w.stdin.close(); p.wait(); w.wait()
    await asyncio.sleep(0.3)
    if cm: await cm.__aexit__(None, None, None)
    else: await runner.cleanup()
asyncio.run(main())
