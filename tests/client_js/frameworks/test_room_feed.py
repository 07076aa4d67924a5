"""clients/shared/roomFeed.ts, the rules the three framework packages share, under node --test
(``room_feed.test.mjs``, a scripted client). TypeScript compiles it first: tests/client_js's own
(``npm ci --prefix tests/client_js``), into a temporary tree beside a copy of wsops-client.js."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.client_js.frameworks.packages import CLIENTS
from tests.client_js.hosts import CLIENT, NODE, TSC

HERE = Path(__file__).resolve().parent


def test_room_feed_unit_tests_pass(tmp_path: Path) -> None:
    if NODE is None or not TSC.exists():
        pytest.skip("typescript is not installed (npm ci --prefix tests/client_js)")
    # The compiled module imports ../../wsops/static/wsops-client.js, as in the repository.
    (tmp_path / "wsops" / "static").mkdir(parents=True)
    shutil.copy(CLIENT, tmp_path / "wsops" / "static" / CLIENT.name)
    out = tmp_path / "clients" / "shared"
    compiled = subprocess.run(
        [str(TSC), "--strict", "--target", "ES2022", "--module", "ES2022", "--moduleResolution",
         "bundler", "--outDir", str(out), str(CLIENTS / "shared" / "roomFeed.ts")],
        capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    result = subprocess.run([NODE, "--test", str(HERE / "room_feed.test.mjs")],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "ROOM_FEED": str(out / "roomFeed.js")})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout
