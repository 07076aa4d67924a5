"""The README's quick start example runs and shows what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_example_talks_to_a_real_server() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "alice <- chat:lobby#3: {'from': 'bob', 'text': 'all green'}" in out
    assert "history : ['how is the fleet?', 'all green']" in out
    assert "alice !! gap in chat:lobby" in out
    assert "alice <- chat:lobby#1: {'from': 'bob', 'text': 'back again'}" in out
    assert "close codes [1012]" in out
