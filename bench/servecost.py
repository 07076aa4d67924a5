"""User-space instructions per echo publish of ``wsops serve``, counted by callgrind, per
configuration of ``bench/overhead.py`` (bare, metrics-only, instrumented with 1% tracing;
``traced100`` on request).

    python bench/servecost.py [--configs bare metrics-only instrumented] [--tree DIR]
                              [--json bench/results/servecost.json]

Each configuration's server runs under ``valgrind --tool=callgrind --instr-atstart=no``; ten
clients (this process) each subscribe to a room of their own and publish to it with one
publish in flight (the next goes when the previous one's reply and message are both back), as
``overhead.py``'s echo does. Counting is switched on only around the measured publishes, and
the figure is (instructions for 4,000 publishes - for 1,000) / 3,000, so warm-up, start-up and
the counting switch cancel out. Repeatable to a few instructions whatever else the machine
does, which CPU time on this machine is not (``overhead.py`` reads 1.05-1.20 for the same two
trees from one run to the next).

What it is blind to: the kernel (an echo publish's ``recv`` and two ``send`` calls are about as
much CPU as the server's user space here), so the ratio it prints overstates the CPU-time ratio.
``--cpu`` also measures, without valgrind, the bare server's user and system CPU seconds per
publish, and prints the CPU-time ratio the instruction counts imply:
``(bare_user * ratio + bare_sys) / (bare_user + bare_sys)``, instrumentation adding user-space
work only.

The instrumented configuration exports its 1% of spans over OTLP/HTTP to ``otlpsink.py``,
started here (outside valgrind); a span's export thread runs inside the counted window (it is
the server's work too). ``--tree DIR`` counts another checkout's server (``git archive REV |
tar -x -C DIR``) after this one's, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from benchprocs import callgrind_total, free_port  # noqa: E402

CONFIGS: dict[str, list[str]] = {
    "bare": ["--no-instrument"],
    "metrics-only": ["--instrument", "--no-tracing"],
    "instrumented": ["--instrument", "--trace-sample-ratio", "0.01"],
    # Not in the default run: every publish traced (issue #18's 1.5x bound on echo).
    "traced100": ["--instrument", "--trace-sample-ratio", "1.0"],
}
DEFAULT_CONFIGS = ["bare", "metrics-only", "instrumented"]
CLIENTS = 10
SMALL, LARGE = 1000, 4000


def wait_ready(admin: int, proc: subprocess.Popen[bytes], seconds: float = 120.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit("the server under valgrind exited before it was ready")
        try:
            # /readyz, not /healthz: the admin listener answers before the WebSocket port is
            # bound (a slow start under valgrind once refused the first client).
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server under valgrind was not ready in time")


async def echo(port: int, publishes: int, toggle: Any) -> None:
    """Warm up, then ``publishes`` echo publishes over ``CLIENTS`` connections, counted."""
    async with aiohttp.ClientSession() as session:
        conns = []
        for i in range(CLIENTS):
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}/ws")
            await ws.send_str(json.dumps({"op": "subscribe", "id": 1, "room": f"echo-{i}"}))
            reply = json.loads(await ws.receive_str())
            if not reply.get("ok"):
                raise SystemExit(f"subscribe refused: {reply}")
            conns.append((ws, f"echo-{i}"))

        async def one(ws: aiohttp.ClientWebSocketResponse, room: str, n: int, first: int) -> None:
            for k in range(first, first + n):
                await ws.send_str(json.dumps(
                    {"op": "publish", "id": k, "room": room, "data": {"text": "x" * 40}}))
                await ws.receive_str()  # the reply and the room's message, in either order
                await ws.receive_str()

        await asyncio.gather(*(one(ws, room, 50, 2) for ws, room in conns))
        toggle("on")
        await asyncio.gather(*(one(ws, room, publishes // CLIENTS, 100) for ws, room in conns))
        toggle("off")
        for ws, _ in conns:
            await ws.close()


def count(flags: list[str], publishes: int, env: dict[str, str], cwd: Path | None) -> int:
    """User-space instructions of one server while it serves ``publishes`` echo publishes."""
    port, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={out}", sys.executable, "-m", "wsops", "serve",
             "--allow-anonymous", "--port", str(port), "--admin-port", str(admin),
             "--rate-limit", "100000", "--rate-burst", "100000", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)

        def toggle(state: str) -> None:
            subprocess.run(["callgrind_control", "-i", state, str(proc.pid)], check=True,
                           capture_output=True)

        try:
            wait_ready(admin, proc)
            asyncio.run(echo(port, publishes, toggle))
        finally:
            proc.terminate()
            proc.wait(60)
        return callgrind_total(out)


def cpu_split(env: dict[str, str], cwd: Path | None, publishes: int = 20000) -> dict[str, float]:
    """User and system CPU seconds per publish of the bare server, without valgrind."""
    import psutil  # type: ignore[import-untyped]

    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsops", "serve", "--allow-anonymous", "--port", str(port),
         "--admin-port", str(admin), "--rate-limit", "100000", "--rate-burst", "100000",
         *CONFIGS["bare"]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        cwd=cwd)
    try:
        wait_ready(admin, proc)
        ps = psutil.Process(proc.pid)
        marks: list[Any] = []
        asyncio.run(echo(port, publishes, lambda _: marks.append(ps.cpu_times())))
        before, after = marks
        return {"user_us": (after.user - before.user) / publishes * 1e6,
                "sys_us": (after.system - before.system) / publishes * 1e6}
    finally:
        proc.terminate()
        proc.wait(30)


def measure(configs: list[str], env: dict[str, str], cwd: Path | None,
            label: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for name in configs:
        small = count(CONFIGS[name], SMALL, env, cwd)
        large = count(CONFIGS[name], LARGE, env, cwd)
        found[name] = (large - small) / (LARGE - SMALL)
        print(f"{label:6s} {name:13s} {found[name]:10,.0f} instructions/publish", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=DEFAULT_CONFIGS)
    parser.add_argument("--tree", type=Path, help="also count this checkout's server")
    parser.add_argument("--cpu", action="store_true",
                        help="also measure the bare server's user/system CPU split (no valgrind)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, str(BENCH / "otlpsink.py"), "--port",
                             str(sink_port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink_port}"
    env.pop("WSOPS_ADMIN_TOKEN", None)
    trees: dict[str, tuple[dict[str, str], Path | None]] = {"this": (env, None)}
    if args.tree is not None:
        tree = args.tree.resolve()
        trees["tree"] = ({**env, "PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1"}, tree)
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "publishes": [SMALL, LARGE], "clients": CLIENTS, "trees": {}}
    try:
        for label, (tree_env, cwd) in trees.items():
            found = measure(args.configs, tree_env, cwd, label)
            entry: dict[str, Any] = {"instructions_per_publish": found}
            if "bare" in found:
                entry["ratio_to_bare"] = {k: v / found["bare"] for k, v in found.items()}
                for k, v in entry["ratio_to_bare"].items():
                    print(f"{label:6s} {k:13s} / bare: {v:.3f} (user space)")
                if args.cpu:
                    split = cpu_split(tree_env, cwd)
                    user, system = split["user_us"], split["sys_us"]
                    entry["bare_cpu_us_per_publish"] = split
                    entry["cpu_ratio_implied"] = {
                        k: (user * v + system) / (user + system)
                        for k, v in entry["ratio_to_bare"].items()}
                    print(f"{label:6s} bare CPU per publish: user {user:.1f} us, "
                          f"system {system:.1f} us")
                    for k, v in entry["cpu_ratio_implied"].items():
                        print(f"{label:6s} {k:13s} / bare: {v:.3f} (CPU time, implied)")
            result["trees"][label if label == "this" else str(args.tree)] = entry
    finally:
        sink.terminate()
        sink.wait(10)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
