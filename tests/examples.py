"""Load the files under examples/ as modules, for tests that drive them in-process."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
INSTRUMENT_EXAMPLE = EXAMPLES / "instrument_existing_app.py"


def load_example(path: Path = INSTRUMENT_EXAMPLE) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
