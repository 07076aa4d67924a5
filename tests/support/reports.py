"""Hold an HTML report (``--report``) to its command's ``--json`` in headless Chromium.

``check_report`` opens the file as a user would (``file://``) and asserts: no console error,
no error of the browser's own (a CSP refusal, a missing resource), no request but the file
itself; every expected section present; the embedded data equal to the JSON; and each figure
shown (``data-key``/``data-value``: a JSON Pointer into the data and the number shown) equal to
the JSON at that pointer. It takes a screenshot into tests/artifacts and, with
``WSOPS_UPDATE_SCREENSHOTS=1``, into docs/reports/ where the README shows it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.artifacts import ROOT, artifact
from tests.support.chromium import Chromium

README_SHOTS = ROOT / "docs" / "reports"
SHOT_HEIGHT = 2400  # CSS pixels of the page's top kept in a screenshot


def resolve(data: Any, pointer: str) -> Any:
    """``data`` at a JSON Pointer; a list met by a name gives that name of each of its items
    (what a chart's ``data-key`` means by ``/timeline/p99_ms``)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]

    def walk(node: Any, rest: list[str]) -> Any:
        if not rest:
            return node
        head = rest[0]
        if isinstance(node, list):
            if head.isdigit():
                return walk(node[int(head)], rest[1:])
            return [walk(item, rest) for item in node]
        if not isinstance(node, dict) or head not in node:
            raise KeyError(f"{pointer}: no {head!r} in the data")
        return walk(node[head], rest[1:])

    return walk(data, parts)


async def check_report(path: Path, data: dict[str, Any], sections: Sequence[str],
                       shot: str, must_show: Sequence[str] = (),
                       readme: bool = False) -> dict[str, int]:
    """Open ``path`` in headless Chromium and hold it to ``data`` (its command's ``--json``);
    ``sections``: ids that must be there; ``must_show``: pointers a figure must show; ``readme``:
    the screenshot is the README's. Returns how many figures and charts were checked."""
    url = path.absolute().as_uri()  # noqa: ASYNC240 (no I/O: the working directory's path)
    browser = Chromium()
    await browser.start()
    try:
        page = await browser.new_page()
        await page.send("Network.enable")
        await page.send("Log.enable")
        await page.goto(url)
        await page.send("Emulation.setDeviceMetricsOverride", width=1100, height=900,
                        deviceScaleFactor=1, mobile=False)
        assert not page.console, page.console
        assert not page.log_errors, page.log_errors
        assert set(page.requests) <= {url}, f"the report asked the network: {page.requests}"
        present = await page.evaluate("[...document.querySelectorAll('section[id]')]"
                                      ".map(s => s.id)")
        missing = [s for s in sections if s not in present]
        assert not missing, f"sections missing: {missing} (present: {present})"
        embedded = await page.evaluate(
            "JSON.parse(document.getElementById('report-data').textContent)")
        assert embedded == json.loads(json.dumps(data)), "the embedded data is not the JSON"
        shown = await page.evaluate(
            "[...document.querySelectorAll('[data-key]')].map(e => "
            "[e.dataset.key, e.dataset.value, e.closest('svg') !== null])")
        wrong = []
        for key, value, _ in shown:
            try:
                expected = resolve(data, key)
            except (KeyError, IndexError) as exc:
                wrong.append(f"{key}: {exc}")
                continue
            if json.loads(value) != json.loads(json.dumps(expected)):
                wrong.append(f"{key}: shows {value[:200]}, the JSON has {str(expected)[:200]}")
        assert not wrong, "\n".join(wrong)
        keys = {k for k, _, _ in shown}
        absent = [k for k in must_show if k not in keys]
        assert not absent, f"figures not shown: {absent}"
        png = await page.screenshot(artifact(shot), max_height=SHOT_HEIGHT)
        if readme and os.environ.get("WSOPS_UPDATE_SCREENSHOTS") == "1":
            README_SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, README_SHOTS / shot)
        await page.close()
        return {"figures": sum(1 for *_, in_svg in shown if not in_svg),
                "chart_parts": sum(1 for *_, in_svg in shown if in_svg)}
    finally:
        await browser.stop()
