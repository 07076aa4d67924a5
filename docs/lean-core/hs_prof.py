import asyncio, subprocess, sys, cProfile, pstats, io
from aiohttp import web
import handoff
async def main():
    app = web.Application(); app.router.add_get("/ws", handoff.ws_handler)
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start(); port = runner.addresses[0][1]
    run = asyncio.get_running_loop().run_in_executor
    pr = cProfile.Profile(); pr.enable()
    p = subprocess.Popen([sys.executable, "client.py", str(port), "500", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await run(None, p.stdout.readline); await asyncio.sleep(0.05)
    pr.disable()
    s = io.StringIO(); st = pstats.Stats(pr, stream=s); st.sort_stats("tottime").print_stats(22); print(s.getvalue()[:5000])
    p.stdin.close(); p.wait()
asyncio.run(main())
