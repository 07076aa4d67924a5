# Server-side CPU per accepted handshake (process_time of this process while a separate client process
# opens N connections sequentially). Not a load test: 500 connections, one client.
import asyncio, subprocess, sys, time, gc
from aiohttp import web
MODE, N = sys.argv[1], 500
async def main():
    if MODE == "naive":
        async def h(request):
            ws = web.WebSocketResponse(heartbeat=30.0, compress=False); await ws.prepare(request)
            async for msg in ws: pass
            return ws
        app = web.Application(); app.router.add_get("/ws", h)
        runner = web.AppRunner(app, access_log=None); await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start(); port = runner.addresses[0][1]
    elif MODE == "handoff":
        import handoff
        app = web.Application(); app.router.add_get("/ws", handoff.ws_handler)
        runner = web.AppRunner(app, access_log=None); await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start(); port = runner.addresses[0][1]
    else:
        from wsops.config import Settings
        from wsops.server.app import running
        cm = running(Settings(host="127.0.0.1", port=0, admin_port=None, allow_anonymous=True,
                              instrument=True, heartbeat=30.0))
        app, runner, port = await cm.__aenter__()
    run = asyncio.get_running_loop().run_in_executor
    w = subprocess.Popen([sys.executable, "client.py", str(port), "5", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await run(None, w.stdout.readline); await asyncio.sleep(0.2)
    gc.collect(); gc.disable()
    c0 = time.process_time(); t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "client.py", str(port), str(N), "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await run(None, p.stdout.readline); await asyncio.sleep(0.05)
    c1 = time.process_time(); t1 = time.monotonic(); gc.enable()
    print(f"{MODE}: server CPU per handshake {(c1 - c0) / N * 1e6:.0f} us (wall {t1 - t0:.2f} s for {N})")
    p.stdin.close(); w.stdin.close(); p.wait(); w.wait()
asyncio.run(main())
