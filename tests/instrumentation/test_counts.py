"""``Counts``, the histogram counting under every wsops metric: the Python class and its
compiled twin (``_counting.c``) held to the same behaviour, case by case and on random
operations."""

from __future__ import annotations

import importlib
import math
import shutil
import sysconfig
import time
from bisect import bisect_left
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsops.instrumentation import pycounts
from wsops.instrumentation.metrics import Histogram, SizeHistogram


def _compiled() -> Any:
    try:
        return importlib.import_module("wsops.instrumentation._counting").Counts
    except ImportError:
        return None


COMPILED = _compiled()
KINDS = [pytest.param(pycounts.Counts, id="python"),
         pytest.param(COMPILED, id="compiled", marks=pytest.mark.skipif(
             COMPILED is None, reason="the extension was not built (no C compiler)"))]


def test_the_compiled_class_is_built_and_used_where_a_compiler_is() -> None:
    if not (sysconfig.get_config_var("CC") and shutil.which(
            str(sysconfig.get_config_var("CC")).split()[0])):
        pytest.skip("no C compiler: the Python class is the one used")
    assert COMPILED is not None, "pip install -e . did not build wsops/instrumentation/_counting"
    assert pycounts.COMPILED and pycounts.Fast is COMPILED
    assert isinstance(Histogram([1.0]), COMPILED) and isinstance(SizeHistogram(), COMPILED)


@pytest.mark.parametrize("kind", KINDS)
def test_bounds_are_inclusive_upper_bounds(kind: Any) -> None:
    c = kind([0.1, 1.0])
    for v in (0.05, 0.1, 0.5, 1.0, 2.0, float("inf"), -1.0):
        c.observe(v)
    assert c.counts == [3, 2, 2] and c.count == 7
    assert [c.index(v) for v in (0.1, 0.10000001, 1.0, 1.5)] == [0, 1, 1, 2]
    assert c.bounds == [0.1, 1.0]


@pytest.mark.parametrize("kind", KINDS)
def test_integer_bounds_stay_integers_and_sizes_land_where_bisect_puts_them(kind: Any) -> None:
    bounds = [64, 256, 1024]
    c = kind(bounds)
    for n in range(0, 1100, 7):
        assert c.index(n) == bisect_left(bounds, n), n
    assert all(type(b) is int for b in c.bounds)


@pytest.mark.parametrize("kind", KINDS)
def test_observe_n_counts_n_and_adds_n_times_the_value(kind: Any) -> None:
    c = kind([64, 256])
    c.observe_n(100, 5)
    c.observe_n(10, 0)
    assert c.counts == [0, 5, 0] and c.sum == 500.0
    with pytest.raises(ValueError, match=">= 0"):
        c.observe_n(10, -1)
    assert c.counts == [0, 5, 0] and c.sum == 500.0


@pytest.mark.parametrize("kind", KINDS)
def test_observe_since_reads_the_perf_counter(kind: Any) -> None:
    c = kind([0.001, 0.01, 10.0])
    before = time.perf_counter()
    c.observe_since(before - 0.002)  # started 2 ms ago
    took = time.perf_counter() - before
    assert c.counts == [0, 1, 0, 0] and 0.002 <= c.sum <= 0.002 + took
    c.observe_since(time.perf_counter())  # under a microsecond: the first bucket
    assert c.counts == [1, 1, 0, 0]


@pytest.mark.skipif(COMPILED is None, reason="the extension was not built")
def test_the_compiled_clock_is_time_perf_counter() -> None:
    counting = importlib.import_module("wsops.instrumentation._counting")
    before = time.perf_counter()
    now = counting.perf_counter()
    assert before <= now <= time.perf_counter()
    assert counting.MAX_BOUNDS == pycounts.MAX_BOUNDS  # the two take the same bounds


@pytest.mark.parametrize("kind", KINDS)
def test_observe_elapsed_observes_each_start_against_one_now(kind: Any) -> None:
    c = kind([0.001, 0.01])
    c.observe_elapsed(100.0, [99.9995, 99.995, 99.0])
    c.observe_elapsed(100.0, ())
    assert c.counts == [1, 1, 1] and math.isclose(c.sum, 0.0005 + 0.005 + 1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_exemplars_keep_the_last_traced_observation_of_each_bucket(kind: Any) -> None:
    c = kind([0.001, 0.01])
    before = time.time()
    c.observe_traced(0.0005, "ab" * 16)
    c.observe_traced(0.005, b"\x01" * 16, 1234.5)
    c.observe_traced(0.001, 7, at=99.0)  # a bound is its bucket's
    assert c.exemplars[0] == (7, 0.001, 99.0) and c.exemplars[1] == (b"\x01" * 16, 0.005, 1234.5)
    assert c.counts == [2, 1, 0] and set(c.exemplars) == {0, 1}
    c.observe_traced(0.5, "cd" * 16)
    assert before <= c.exemplars[2][2] <= time.time()


@pytest.mark.parametrize("kind", KINDS)
def test_counts_are_a_copy_and_replaced_whole(kind: Any) -> None:
    c = kind([1.0, 2.0])
    c.observe(0.5)
    c.counts[0] += 10  # a copy: not the histogram's
    assert c.counts == [1, 0, 0]
    c.counts = [4, 5, 6]
    c.sum = 7.5
    assert c.counts == [4, 5, 6] and c.count == 15 and c.sum == 7.5
    with pytest.raises(ValueError, match="2 counts for 3 buckets"):
        c.counts = [1, 2]
    assert c.counts == [4, 5, 6]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bounds", [[], [1.0, 1.0], [2.0, 1.0], [float("nan")], [1.0, float("nan")],
                                    list(range(1, 66))])
def test_bad_bounds_are_refused(kind: Any, bounds: list[float]) -> None:
    with pytest.raises(ValueError, match="bounds"):
        kind(bounds)


@pytest.mark.parametrize("kind", KINDS)
def test_as_many_as_max_bounds_are_taken(kind: Any) -> None:
    c = kind(list(range(1, pycounts.MAX_BOUNDS + 1)))
    c.observe(pycounts.MAX_BOUNDS + 1)
    assert len(c.counts) == pycounts.MAX_BOUNDS + 1 and c.counts[-1] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_values_that_are_not_numbers_are_refused_without_counting(kind: Any) -> None:
    c = kind([1.0])
    for bad in ("1", None, [1]):
        with pytest.raises(TypeError):
            c.observe(bad)
        with pytest.raises(TypeError):
            c.observe_since(bad)
    with pytest.raises(TypeError):
        c.observe_elapsed(1.0, [0.5, "x"])
    with pytest.raises(OverflowError):
        c.observe_elapsed(1.0, [0.5, 10**400])  # an int no float holds: nothing counted
    assert c.count == 0 and c.sum == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_bad_bounds_leave_a_histogram_as_it_was(kind: Any) -> None:
    c = kind([1.0, 2.0, 3.0])
    c.observe(2.5)
    with pytest.raises(ValueError, match="bounds"):
        c.__init__([0.5, 5.0, 4.0])  # a second __init__, refused
    c.observe(2.5)
    assert c.bounds == [1.0, 2.0, 3.0] and c.counts == [0, 0, 2, 0]


@pytest.mark.skipif(COMPILED is None, reason="the extension was not built")
def test_the_compiled_class_says_when_it_was_not_initialised() -> None:
    c = COMPILED.__new__(COMPILED)
    with pytest.raises(RuntimeError, match="__init__"):
        _ = c.bounds
    with pytest.raises(RuntimeError, match="__init__"):
        c.observe_traced(1.0, "ab")


OPS = st.one_of(
    st.tuples(st.just("observe"), st.one_of(
        st.floats(-1e6, 1e6), st.integers(0, 1 << 31), st.just(float("inf")))),
    st.tuples(st.just("observe_n"), st.integers(0, 1 << 31), st.integers(0, 1000)),
    st.tuples(st.just("observe_elapsed"), st.floats(0, 1e6),
              st.lists(st.floats(0, 1e6), max_size=5)),
    st.tuples(st.just("observe_traced"), st.floats(-1e3, 1e3), st.text(max_size=4),
              st.floats(0, 1e10)),
)


@pytest.mark.skipif(COMPILED is None, reason="the extension was not built")
@settings(max_examples=300, deadline=None)
@given(bounds=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20, unique=True),
       ops=st.lists(OPS, max_size=40))
def test_python_and_compiled_counts_agree(bounds: list[float], ops: list[tuple[Any, ...]]
                                          ) -> None:
    bounds.sort()
    python, compiled = pycounts.Counts(bounds), COMPILED(bounds)
    for name, *args in ops:
        getattr(python, name)(*args)
        getattr(compiled, name)(*args)
    assert python.counts == compiled.counts
    assert python.sum == compiled.sum or (math.isnan(python.sum) and math.isnan(compiled.sum))
    assert python.exemplars == compiled.exemplars
