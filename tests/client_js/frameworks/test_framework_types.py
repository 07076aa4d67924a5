"""Each framework package type-checks strictly: ``npm run typecheck`` is ``tsc --noEmit`` for
React, ``vue-tsc --noEmit`` for Vue (tsc plus the .vue templates) and ``ngc`` for Angular (tsc
plus the templates, ``noEmit`` from tsconfig.json). Each covers the package's source, its example
page and test/types.ts, whose ``@ts-expect-error`` lines must each fail to compile (the checker
fails on one that compiles): the types are not ``any`` in disguise."""

from __future__ import annotations

import json

import pytest

from tests.client_js.frameworks.packages import CLIENTS, FRAMEWORKS, npm_run


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_package_type_checks(framework: str) -> None:
    config = json.loads((CLIENTS / framework / "tsconfig.json").read_text())
    assert config["compilerOptions"]["strict"] is True
    assert {"src", "example", "test"} <= set(config["include"])
    result = npm_run(framework, "typecheck")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
