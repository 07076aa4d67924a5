"""What the wheel declares and ships: the SPDX license (PEP 639), its file, and ``py.typed``.

A wheel built from this tree (``pip wheel . --no-deps``, setuptools >= 77) has
``License-Expression: Apache-2.0``, ``dist-info/licenses/LICENSE`` and ``wsops/py.typed``;
building one needs the build backend from the network, so this checks the declarations that
produce them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import wsops

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_is_an_spdx_expression_with_its_file() -> None:
    project = PROJECT["project"]
    assert project["license"] == "Apache-2.0"  # a string: the TOML table form is deprecated
    assert project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert "Version 2.0" in (ROOT / "LICENSE").read_text()[:300]
    requires = PROJECT["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in requires)
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))


def test_the_package_is_marked_typed_and_ships_the_marker() -> None:
    assert (Path(wsops.__file__).parent / "py.typed").is_file()
    assert "py.typed" in PROJECT["tool"]["setuptools"]["package-data"]["wsops"]
