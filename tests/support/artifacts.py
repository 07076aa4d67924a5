"""Where tests leave figures and files for people (``$WSOPS_ARTIFACTS``, else tests/artifacts/)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def artifact(name: str) -> Path:
    folder = Path(os.environ.get("WSOPS_ARTIFACTS") or ROOT / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def record(name: str, figures: dict[str, Any]) -> Path:
    """Write ``figures`` as JSON (and print them: ``pytest -s`` shows them)."""
    path = artifact(name)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"{name}: {json.dumps(figures, sort_keys=True)}")
    return path
