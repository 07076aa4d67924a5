"""The framework packages of clients/ (React, Vue, Angular): where they are, their type check,
and their example pages built with each package's own tool (``npm run build:example``: Vite,
with Analog's Angular plugin for Angular).

Their node_modules come from each package's package-lock.json (``npm ci --prefix clients/NAME``,
which scripts/test.sh runs); without them the tests that need them are skipped, saying so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CLIENTS = Path(__file__).resolve().parents[3] / "clients"
FRAMEWORKS = ["react", "vue", "angular"]
NPM = shutil.which("npm")


def package(framework: str) -> Path:
    """The package's directory, once its dependencies are installed (else the test skips)."""
    root = CLIENTS / framework
    if NPM is None:
        pytest.skip("npm is not installed")
    if not (root / "node_modules" / ".bin" / "vite").exists():
        pytest.skip(f"clients/{framework} is not installed (npm ci --prefix clients/{framework})")
    return root


def npm_run(framework: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``npm run SCRIPT -- ARGS`` in the package (no network: everything is in node_modules)."""
    root = package(framework)
    assert NPM is not None
    return subprocess.run([NPM, "run", "--silent", script, "--", *args], cwd=root,
                          capture_output=True, text=True, timeout=300)


class ExamplePages:
    """Each framework's example page, built once per test session into its own folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.built: dict[str, Path] = {}

    def get(self, framework: str) -> Path:
        if framework not in self.built:
            out = self.folder / framework
            result = npm_run(framework, "build:example", "--outDir", str(out), "--emptyOutDir",
                             "--logLevel", "warn")
            assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
            assert (out / "index.html").exists(), f"no index.html in {out}"
            self.built[framework] = out
        return self.built[framework]
