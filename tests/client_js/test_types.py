"""``wsops-client.d.ts`` type-checks a typed example with ``tsc --noEmit``, and rejects misuse.

TypeScript comes from tests/client_js/package.json (``npm ci --prefix tests/client_js``, which
scripts/test.sh runs).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.client_js.hosts import CLIENT, HERE, NODE, TSC


def tsc(project: Path) -> subprocess.CompletedProcess[str]:
    if NODE is None or not TSC.exists():
        pytest.skip("typescript is not installed (npm ci --prefix tests/client_js)")
    return subprocess.run([str(TSC), "-p", str(project)], capture_output=True, text=True,
                          timeout=120)


def test_typed_example_checks() -> None:
    result = tsc(HERE / "typed")
    assert result.returncode == 0, result.stdout + result.stderr


MISUSES = {
    "publish without data": 'c.publish("room");',
    "a room that is not a string": "c.subscribe(42);",
    "an unknown event": 'c.on("messages", () => {});',
    "a listener of the wrong payload": 'c.on("gap", (m: { data: unknown; offset: number }) => m);',
    "an unknown option": 'new WsopsClient("ws://x/ws", { backofBaseMs: 1 });',
    "a presence list used as a string": 'c.presence("r").then((u) => u.toUpperCase());',
    "writing the state": 'c.state = "open";',
}


def test_misuse_is_rejected(tmp_path: Path) -> None:
    """Each line alone must fail to compile: the definitions are not ``any`` in disguise."""
    for i, line in enumerate(MISUSES.values()):
        (tmp_path / f"m{i}.ts").write_text(
            f'import {{ WsopsClient }} from "{CLIENT}";\n'
            f'const c = new WsopsClient("ws://127.0.0.1/ws");\n{line}\nexport {{ c }};\n')
    config = json.loads((HERE / "typed" / "tsconfig.json").read_text())
    config["compilerOptions"].update(noUnusedLocals=False, types=[], typeRoots=[])
    config["files"] = [f"m{i}.ts" for i in range(len(MISUSES))]
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    result = tsc(tmp_path)
    failed = {int(i) for i in re.findall(r"\bm(\d+)\.ts\(\d+,\d+\): error TS", result.stdout)}
    accepted = [name for i, name in enumerate(MISUSES) if i not in failed]
    assert not accepted, f"tsc accepted: {accepted}\n{result.stdout}"
