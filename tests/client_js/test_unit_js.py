"""The client's deterministic unit tests (``unit.test.mjs``, a scripted socket) in node --test."""

from __future__ import annotations

import subprocess

import pytest

from tests.client_js.hosts import HERE, NODE


def test_node_unit_tests_pass() -> None:
    if NODE is None:
        pytest.skip("node is not installed")
    result = subprocess.run([NODE, "--test", str(HERE / "unit.test.mjs")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout
