"""The GC policy's freezer on the real collector: what it freezes, what it pauses for, and the
valve that collects cycles which died while frozen."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from wsops.node.gcpolicy import GcFreezer


class Node:
    """A GC-tracked object that can hold a reference to itself (a cycle)."""

    def __init__(self) -> None:
        self.me: Node | None = None


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.collect()
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_step_collects_then_freezes_what_is_alive(thawed: None) -> None:
    clock = [0.0]
    freezer = GcFreezer(1.0, clock=lambda: clock[0])
    keep = [Node() for _ in range(1000)]
    garbage = Node()
    garbage.me = garbage
    dead = weakref.ref(garbage)
    del garbage
    freezer.step()
    assert dead() is None  # collected before the freeze, never frozen
    frozen = gc.get_freeze_count()
    assert frozen >= 1000 and freezer.freezes == 1
    assert not any(o is keep[0] for o in gc.get_objects())  # out of every collection's walk
    del keep
    assert gc.get_freeze_count() <= frozen - 1000  # frozen, acyclic: freed by refcounting


def test_a_cycle_that_dies_frozen_waits_for_the_valve(thawed: None) -> None:
    clock = [0.0]
    freezer = GcFreezer(1.0, valve=60.0, clock=lambda: clock[0])
    node = Node()
    node.me = node
    ref = weakref.ref(node)
    freezer.step()
    del node
    gc.collect()
    assert ref() is not None  # frozen: no collection sees it
    clock[0] = 30.0
    freezer.step()
    assert ref() is not None and freezer.valves == 0
    clock[0] = 61.0
    freezer.step()
    assert ref() is None and freezer.valves == 1


def test_nothing_is_frozen_while_paused(thawed: None) -> None:
    paused = [True]
    freezer = GcFreezer(1.0, paused=lambda: paused[0])
    freezer.step()
    assert gc.get_freeze_count() == 0 and freezer.freezes == 0
    paused[0] = False
    freezer.step()
    assert gc.get_freeze_count() > 0


def test_bad_intervals_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        GcFreezer(0)
