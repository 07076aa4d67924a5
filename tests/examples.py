"""Load the files under examples/ as modules, for tests that drive them in-process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
INSTRUMENT_EXAMPLE = EXAMPLES / "instrument_existing_app.py"


FLEET_EXAMPLE = EXAMPLES / "fleet" / "fleet.py"


def load_example(path: Path = INSTRUMENT_EXAMPLE) -> ModuleType:
    name = f"wsops_example_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the file runs
    spec.loader.exec_module(mod)
    return mod
