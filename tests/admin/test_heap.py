"""The node's grouping of tracemalloc traces and gc objects, on data made up here."""

from __future__ import annotations

import pytest

from wsops.admin import heap


def raw(size: int, *frames: tuple[str, int]) -> tuple[int, int, tuple[tuple[str, int], ...], int]:
    return (0, size, tuple(frames), len(frames))


TRACES = [
    raw(100, ("app.py", 5), ("main.py", 1)),
    raw(100, ("app.py", 5), ("main.py", 1)),
    raw(300, ("app.py", 5), ("other.py", 2)),
    raw(50, ("lib.py", 9), ("app.py", 6)),
    raw(999, ("profiler.py", 1), ("app.py", 7)),
    raw(40, ("lib.py", 9), ("profiler.py", 3)),
]


def test_group_by_line_sums_every_path_and_keeps_the_biggest() -> None:
    sites = {s.key: s for s in heap.group_traces(TRACES, "lineno", ["profiler.py"])}
    assert set(sites) == {"app.py:5", "lib.py:9"}  # the profiler's own traces are left out
    app = sites["app.py:5"]
    assert (app.size, app.count) == (500, 3)
    assert app.traceback == (("app.py", 5), ("other.py", 2))
    assert (sites["lib.py:9"].size, sites["lib.py:9"].count) == (50, 1)


def test_group_by_traceback_keeps_paths_apart() -> None:
    sites = heap.group_traces(TRACES, "traceback", ["profiler.py"])
    by_size = sorted((s.size, s.count, s.key.split("#")[0]) for s in sites)
    assert by_size == [(50, 1, "lib.py:9"), (200, 2, "app.py:5"), (300, 1, "app.py:5")]
    with pytest.raises(ValueError):
        heap.group_traces(TRACES, "module")


def test_select_reports_the_biggest_and_the_fastest_growing() -> None:
    sizes = {"big": 1000, "mid": 500, "young": 20, "old": 10}
    peak = {"big": 1000, "mid": 600, "young": 1, "old": 10}
    assert heap.select(sizes, peak, 1) == ["big", "young"]
    assert heap.new_peak(sizes, peak) == {"big": 1000, "mid": 600, "young": 20, "old": 10}


def test_type_names_and_counts() -> None:
    class Local:
        pass

    by_type, by_name = heap.count_types([Local(), Local(), {}, []])
    assert by_type[Local] == 2
    assert by_name["dict"] == 1
    assert by_name[f"{__name__}.{Local.__qualname__}"] == 2
