"""Redis CPU per publish script call, as Redis itself counts it (``INFO commandstats``,
``usec_per_call`` of ``evalsha``): this tree's ``PUBLISH`` and, with ``--tree DIR``, another
checkout's, each with the lineage check off (``redis://``) and on (Sentinel; a tree without
the check ignores the argument), side by side, alternating, each against its own fresh
``redis-server`` on a free port (one room, history of 1,000, no subscriber).

    python bench/scriptcost.py --tree /tmp/wsops-base --calls 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

HERE = Path(__file__).resolve().parents[1]


def _script(tree: Path) -> str:
    """``tree``'s PUBLISH script, read by a Python that imports wsops from ``tree``."""
    code = "import sys; from wsops.server.broker.redis_scripts import PUBLISH; print(PUBLISH)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(tree),
                                          "PYTHONSAFEPATH": "1"})
    return out.stdout


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def usec_per_call(source: str, calls: int, lineage: str) -> float:
    port = _port()
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--dir", d,
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL)
        try:
            r = redis.Redis(port=port)
            for _ in range(100):
                try:
                    r.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.02)
            sha = r.script_load(source)
            keys = ["wsops:{r}:meta", "wsops:{r}:log"]
            pipe = r.pipeline(transaction=False)
            for i in range(calls):
                pipe.evalsha(sha, 2, *keys, "wsops:{r}:ch", "e1", 1000, 300000, 0,
                             '{"op":"message","room":"r","offset":', f',"data":{i}}}', "|1|1|",
                             lineage)
                if i % 500 == 499:
                    pipe.execute()
            pipe.execute()
            return float(r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])
        finally:
            proc.kill()
            proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", type=Path, help="another checkout to measure beside this one")
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    trees = {"this": HERE, **({"other": args.tree} if args.tree else {})}
    sources = {name: _script(tree) for name, tree in trees.items()}
    runs = [(name, lineage) for name in trees for lineage in ("0", "1")]
    got: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    for _ in range(args.rounds):
        for name, lineage in runs:
            got[name, lineage].append(usec_per_call(sources[name], args.calls, lineage))
    for (name, lineage), values in got.items():
        print(f"{name:5} lineage {lineage}: median {statistics.median(values):.2f} us per "
              f"publish script (Redis CPU; {', '.join(f'{v:.2f}' for v in values)})")

if __name__ == "__main__":
    main()
