"""Load the files under examples/ as modules, for tests that drive them in-process."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INSTRUMENT_EXAMPLE = EXAMPLES / "instrument_existing_app.py"
FLEET_EXAMPLE = EXAMPLES / "fleet" / "fleet.py"

# The fleet example's broker options in tests, for quick fault detection: a node is dead 1.5 s
# after its last beat, Redis after 1 s of silence.
BROKER_OPTIONS = "heartbeat=0.5&timeout=1"


def load_example(path: Path = INSTRUMENT_EXAMPLE) -> ModuleType:
    name = f"wsops_example_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the file runs
    spec.loader.exec_module(mod)
    return mod


def need_binaries() -> None:
    """Skip unless the fleet example's binaries (HAProxy, redis-server) are installed."""
    missing = [b for b in ("haproxy", "redis-server") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/test.sh installs them)")
