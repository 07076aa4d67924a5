"""The README's quick start example runs and shows what it promises."""

from __future__ import annotations

import re
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
    # Each message names its sender, set by the server: bob's anonymous id, a new one after
    # the restart (a new connection).
    before = re.findall(r"alice <- chat:lobby#(\d) from (anon-[0-9a-f]{12}): (.*)", out)
    assert [(n, data) for n, _, data in before] == [
        ("1", "{'text': 'hello'}"), ("2", "{'text': 'how is the fleet?'}"),
        ("3", "{'text': 'all green'}"), ("1", "{'text': 'back again'}")]
    senders = [sender for _, sender, _ in before]
    assert len(set(senders[:3])) == 1 and senders[3] != senders[0]
    assert "history : ['how is the fleet?', 'all green']" in out
    assert "alice !! gap in chat:lobby" in out
    assert "close codes [1012]" in out
