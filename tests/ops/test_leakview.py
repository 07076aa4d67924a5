"""The terminal drawing of ``wsops leaks``: sparklines and readable paths."""

from __future__ import annotations

import os
import sysconfig

from wsops.ops.leakview import BARS, frames, short_path, sparkline


def test_sparkline_scales_min_to_max_and_fits_the_width() -> None:
    assert sparkline([]) == ""
    assert sparkline([5, 5, 5]) == BARS[0] * 3
    line = sparkline([0, 1, 2, 3, 4, 5, 6, 7])
    assert line[0] == BARS[0] and line[-1] == BARS[-1] and list(line) == sorted(line)
    assert len(sparkline(list(range(1000)), width=40)) == 40


def test_paths_are_shortened_where_people_know_them() -> None:
    stdlib = sysconfig.get_paths()["stdlib"]
    assert short_path(f"{stdlib}/asyncio/events.py") == "asyncio/events.py"
    assert short_path("/venv/lib/python3.11/site-packages/aiohttp/web_ws.py") == "aiohttp/web_ws.py"
    assert short_path(os.path.join(os.getcwd(), "app.py")) == "app.py"
    assert short_path("/elsewhere/app.py") == "/elsewhere/app.py"
    assert frames([("/a/x.py", 1), ("/a/y.py", 2), ("/a/z.py", 3)], 2) == (
        "/a/x.py:1\n← /a/y.py:2\n  (+1 more)")
