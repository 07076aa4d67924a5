"""Chaos (issue #8): clients killed mid-frame, an event loop blocked for seconds, and a server
that must run without writing to disk. Figures go to tests/artifacts/chaos-*.json."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry

import wsops
from tests.conftest import Connect, ServerFactory
from tests.reliability.bystander import Bystander
from tests.support.artifacts import ROOT, record
from tests.support.ports import free_port, serving
from tests.support.procs import ServeProcess, wait_ready
from tests.support.rawws import client_frame, open_raw
from tests.support.scrape import scrape
from tests.support.waits import until
from tests.support.wsclient import RawClient


async def test_clients_reset_mid_frame_count_as_1006_and_leave_nothing_behind(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory()
    node = server.node
    by = await Bystander.start(server.url)
    publisher = await connect(server.url)
    killed = 30
    writers = []
    for i in range(killed):
        _reader, writer, status = await open_raw(server.port)
        assert status == 101
        # Half of them are subscribers of a busy room, so the server is writing to them too.
        if i % 2:
            writer.write(client_frame(b'{"op":"subscribe","room":"busy","id":1,"presence":true}'))
        writers.append(writer)
    def busy() -> int:
        room = node.hub.rooms.get("busy")
        return len(room.conns) if room is not None else 0

    await until(lambda: busy() == killed // 2)
    before = await scrape(server.admin_url)
    pumping = asyncio.create_task(_publish_forever(publisher, "busy"))
    await asyncio.sleep(0.1)  # the stream runs a while: the server is writing to them
    started = time.perf_counter()
    for writer in writers:
        frame = client_frame(b'{"op":"publish","room":"busy","id":2,"data":"' + b"z" * 500 + b'"}')
        writer.write(frame[: len(frame) // 2])  # half a frame...
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # ...then a TCP reset
    await until(lambda: len(node.hub.conns) == 2)  # the bystander and the publisher
    gone_ms = (time.perf_counter() - started) * 1000
    pumping.cancel()
    await asyncio.gather(pumping, return_exceptions=True)
    after = await scrape(server.admin_url)
    code_1006 = (after.get("wsops_connections_closed_total", route="/ws", code="1006")
                 - before.get("wsops_connections_closed_total", route="/ws", code="1006"))
    assert code_1006 == killed
    assert after.get("wsops_connections_open", route="/ws") == 2
    assert "busy" not in node.hub.rooms
    assert set(node.surface.room_leaks().values()) == {0.0}
    assert (await publisher.call("presence", "busy"))["users"] == []
    figures = await by.stop()
    record("chaos-reset-mid-frame.json", {**figures, "killed": killed, "counted_1006": code_1006,
                                          "open_after": 2, "all_gone_ms": round(gone_ms, 1)})


async def _publish_forever(client: RawClient, room: str) -> None:
    n = 0
    while True:
        n += 1
        await client.call("publish", room, data=n)
        await asyncio.sleep(0.005)


class EchoClients(threading.Thread):
    """Clients on their own event loop (this process's loop will be blocked): each echoes a
    message every 50 ms and records how its connection ended."""

    def __init__(self, url: str, n: int, heartbeat: float | None) -> None:
        super().__init__(daemon=True)
        self.url, self.n, self.heartbeat = url, n, heartbeat
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.echoed = [0] * n
        self.ended: dict[int, str] = {}

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        async with aiohttp.ClientSession() as s:
            conns = [await s.ws_connect(self.url, heartbeat=self.heartbeat)
                     for _ in range(self.n)]
            self.ready.set()
            await asyncio.gather(*(self._echo(i, ws) for i, ws in enumerate(conns)))

    async def _echo(self, i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not self.stop.is_set():
            await ws.send_str(str(i))
            msg = await ws.receive()
            if msg.type is not WSMsgType.TEXT:
                self.ended[i] = f"{msg.type.name} {ws.close_code}"
                return
            self.echoed[i] += 1
            await asyncio.sleep(0.05)
        await ws.close()


async def test_a_blocked_loop_shows_in_loop_lag_heartbeats_time_out_and_service_resumes() -> None:
    block = 2.0
    app = web.Application()

    async def blocking(request: web.Request) -> web.Response:
        time.sleep(block)  # the bug under test: sync work on the event loop
        return web.Response(text="done")

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=1.0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app.router.add_get("/block", blocking)
    app.router.add_get("/echo", echo)
    inst = wsops.instrument(app, registry=CollectorRegistry(), admin_port=0, tracing=False,
                            lag_interval=0.1)
    async with serving(app) as port:
        base = f"127.0.0.1:{port}"
        assert inst.admin is not None
        # Clients pinging every 0.5 s give up 0.25 s after an unanswered ping; the rest never ping.
        eager = EchoClients(f"ws://{base}/echo", 5, heartbeat=0.5)
        patient = EchoClients(f"ws://{base}/echo", 5, heartbeat=None)
        try:
            for group in (eager, patient):
                group.start()
                await asyncio.to_thread(group.ready.wait, 10)
            await asyncio.sleep(0.5)  # echoes and pings flow a while before the block
            async with aiohttp.ClientSession() as s:
                started = time.monotonic()
                async with s.get(f"http://{base}/block") as r:
                    assert r.status == 200
                blocked = time.monotonic() - started
                assert blocked >= block
                await until(lambda: len(eager.ended) == 5,
                            what=lambda: f"every eager client timed out: {eager.ended}")
                await until(lambda: inst.live.total() == 10 - len(eager.ended) - len(patient.ended))
                m = await scrape(inst.admin.url)
                # Served again: a new connection echoes, and so does every patient client.
                fresh = await s.ws_connect(f"ws://{base}/echo")
                await fresh.send_str("again")
                assert await fresh.receive_str(timeout=2) == "again"
                await fresh.close()
            counts = list(patient.echoed)

            def echoed_again() -> bool:
                return all(b > a for a, b in zip(counts, patient.echoed, strict=True))

            await until(lambda: patient.ended or echoed_again(),
                        what="every patient client to echo again")
            assert patient.ended == {} and echoed_again()
        finally:
            eager.stop.set()
            patient.stop.set()
            await asyncio.to_thread(eager.join, 5)
            await asyncio.to_thread(patient.join, 5)
    # The lag sampler saw the block: at least one wake-up more than a second late.
    lag_count = m.get("wsops_event_loop_lag_seconds_count")
    over_1s = lag_count - m.get("wsops_event_loop_lag_seconds_bucket", le="1.0")
    assert over_1s >= 1 and m.get("wsops_event_loop_lag_seconds_sum") >= block * 0.8
    # Every eager client timed out its heartbeat during the block; the server counted each
    # as lost (1006). Server-side heartbeat timeouts are counted as such (none expected: the
    # clients answer pings from their own loop).
    assert len(eager.ended) == 5, eager.ended
    lost = m.get("wsops_connections_closed_total", route="/echo", code="1006")
    assert lost == 5
    assert m.get("wsops_heartbeat_timeouts_total", route="/echo") == 0
    record("chaos-blocked-loop.json", {
        "blocked_s": round(blocked, 2), "lag_samples_over_1s": over_1s,
        "lag_sum_s": round(m.get("wsops_event_loop_lag_seconds_sum"), 2),
        "client_heartbeat_timeouts": len(eager.ended), "server_counted_1006": lost,
        "patient_clients_still_echoing": 5})


def _writable_files(pid: int) -> list[str]:
    """Regular files (deleted ones too) the process holds open for writing."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            flags = int(Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split()[3], 8)
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue  # closed meanwhile
        if not target.startswith("/") or target.startswith(("/dev/", "/memfd:")):
            continue  # sockets, pipes, anon inodes, /dev/null
        if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
            out.append(target)
    return out


# Runs ``wsops`` (argv after ``-c``) with an audit hook installed before anything is imported:
# every file the process opens for writing or creates, renames, removes... anywhere (/tmp
# included, whatever TMPDIR says), and any child process it would start (which the hook could
# not see into), is reported on stderr. A hook cannot be removed once added.
AUDITED_SERVE = """
import os, runpy, sys
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
CHANGES = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.link", "os.symlink",
           "os.truncate", "os.chmod", "os.chown", "os.utime", "os.mkfifo", "os.mknod",
           "shutil.copyfile", "shutil.copytree", "shutil.move", "shutil.rmtree",
           "tempfile.mkstemp", "tempfile.mkdtemp", "sqlite3.connect", "dbm.open",
           "subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty", "os.system",
           "os.exec"}
def hook(event, args):
    if event == "open":
        path, _mode, flags = args
        if not isinstance(path, str | bytes) or not flags & WRITE:
            return
        if os.fsdecode(path).startswith(("/dev/", "/proc/")):
            return
    elif event not in CHANGES:
        return
    os.write(2, f"WSOPS-DISK-WRITE {event} {args!r}\\n".encode())
sys.addaudithook(hook)
sys.argv[0] = "wsops"
runpy.run_module("wsops", run_name="__main__", alter_sys=True)
"""


class Output(threading.Thread):
    """Reads a process' output as it comes (a full pipe would block the process)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.lines: list[str] = []

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.decode(errors="replace").rstrip())

    def text(self) -> str:
        """All of it, once the process has exited (waits up to 5 s for the pipe's end)."""
        self.join(5)
        return "\n".join(self.lines)


class FdWatch(threading.Thread):
    """Samples the process' open files every few milliseconds: files it holds open for
    writing, wherever they are (what the audit hook cannot see: writes from C code)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.seen: set[str] = set()
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.005):
            try:
                self.seen.update(_writable_files(self.pid))
            except FileNotFoundError:
                return  # the process is gone
            self.samples += 1


async def test_the_server_writes_nothing_to_disk(connect: Connect) -> None:
    # Its own empty HOME, working directory and TMPDIR (read-only for a non-root server); every
    # other place, /tmp first (where tempfile falls back), is covered by the audit hook and the
    # open-file sampling, which see only this process.
    with (tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as cwd,
          tempfile.TemporaryDirectory() as tmp):
        for path in (home, cwd, tmp):
            os.chmod(path, 0o555)
        port, admin = free_port(), free_port()
        # PYTHONDONTWRITEBYTECODE: bytecode caches are the interpreter's, not the server's
        # (a deployment precompiles them); without it a fresh tree would write __pycache__.
        env = {**os.environ, "HOME": home, "TMPDIR": tmp, "TEMP": tmp, "TMP": tmp,
               "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-c", AUDITED_SERVE, "serve", "--allow-anonymous", "--port",
             str(port), "--admin-port", str(admin), "--heartbeat", "1", "--rate-limit",
             "10000", "--rate-burst", "10000"],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output, files = Output(proc), FdWatch(proc.pid)
        output.start()
        files.start()
        sp = ServeProcess(proc, port, admin)
        try:
            await asyncio.to_thread(wait_ready, sp, 15.0, output.text)
            by = await Bystander.start(sp.url, interval=0.005)
            subs = [await connect(sp.url) for _ in range(20)]
            for c in subs:
                await c.call("subscribe", "disk", presence=True)
            pub = await connect(sp.url)
            for i in range(300):
                assert (await pub.call("publish", "disk", data={"i": i, "blob": "b" * 2000}))["ok"]
                if i % 20 == 0:
                    await scrape(sp.admin_url)
                    await pub.call("history", "disk", limit=1000)
            for c in subs:
                assert len(await c.messages(300)) == 300
            figures = await by.stop()
            for c in subs[:10]:  # leaves, the admin API, a drain: the paths a run takes
                await c.close()
            async with aiohttp.ClientSession() as s:
                async with s.get(sp.admin_url + "/admin/stats") as r:
                    assert r.status == 200
                async with s.post(sp.admin_url + "/admin/drain", json={"deadline": 2}) as r:
                    assert r.status == 202
            assert [await c.wait_closed(10) for c in subs[10:]] == [1012] * 10
            assert proc.poll() is None, "\n".join(output.lines[-20:])
            assert files.samples > 10, files.samples  # it watched the whole run
        finally:
            files.stop.set()
            sp.stop()
            await asyncio.to_thread(output.join, 5)
            files.join(5)
        writes = [line for line in output.lines if line.startswith("WSOPS-DISK-WRITE")]
        assert writes == [], writes[:10]
        assert files.seen == set(), files.seen
        assert os.listdir(home) == [] and os.listdir(cwd) == [] and os.listdir(tmp) == []
        record("chaos-diskless.json", {**figures, "messages": 300, "subscribers": 20,
                                       "files_open_for_writing": 0, "files_created": 0,
                                       "audited_write_events": 0,
                                       "open_file_samples": files.samples})
