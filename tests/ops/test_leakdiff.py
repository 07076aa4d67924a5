"""Comparing two saved samples: growth by line or by path, filters."""

from __future__ import annotations

from wsops.ops.leakcheck import SiteStat
from wsops.ops.leakdiff import diff_sites


def test_diff_by_line_sums_paths_and_filters() -> None:
    a = [SiteStat("k1", "app.py", 5, 1000, 1, (("app.py", 5), ("main.py", 1))),
         SiteStat("k2", "lib.py", 9, 5000, 5, (("lib.py", 9),))]
    b = [SiteStat("k1", "app.py", 5, 9000, 9, (("app.py", 5), ("main.py", 1))),
         SiteStat("k3", "app.py", 5, 1000, 1, (("app.py", 5), ("other.py", 2))),
         SiteStat("k2", "lib.py", 9, 4000, 4, (("lib.py", 9),))]
    rows = diff_sites(a, b)
    assert [(r.key, r.growth) for r in rows] == [("app.py:5", 9000), ("lib.py:9", -1000)]
    paths = diff_sites(a, b, by="traceback")
    assert paths[0].growth == 8000 and paths[1].growth == 1000
    only = diff_sites(a, b, contains="other.py")  # only that path of app.py:5 counts
    assert [(r.key, r.growth) for r in only] == [("app.py:5", 1000)]
    assert diff_sites(a, b, contains="nowhere") == []
