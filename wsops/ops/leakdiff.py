"""Compare two saved samples (``wsops leaks diff``): which sites grew from A to B (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wsops.ops.leakcheck import Frame, SiteStat


@dataclass(frozen=True)
class DiffRow:
    key: str
    size_a: int
    size_b: int
    count_a: int
    count_b: int
    traceback: tuple[Frame, ...]

    @property
    def growth(self) -> int:
        return self.size_b - self.size_a


def _regroup(sites: Sequence[SiteStat], by: str) -> dict[str, SiteStat]:
    out: dict[str, SiteStat] = {}
    for s in sites:
        key = s.where if by == "lineno" else " <- ".join(f"{f}:{n}" for f, n in s.traceback)
        prev = out.get(key)
        if prev is None:
            out[key] = s
        else:  # keep the biggest path as the one shown
            tb = s.traceback if s.size > prev.size else prev.traceback
            out[key] = SiteStat(key, s.file, s.line, prev.size + s.size, prev.count + s.count, tb)
    return out


def diff_sites(a: Sequence[SiteStat], b: Sequence[SiteStat], by: str = "lineno",
               contains: str | None = None, top: int = 20) -> list[DiffRow]:
    """Sites by growth from ``a`` to ``b`` (absent from a file: 0), biggest growth first;
    ``contains`` keeps only allocations with that substring in a ``file:line`` of their
    traceback (before grouping, so a line's total counts only the paths that match)."""
    if by not in ("lineno", "traceback"):
        raise ValueError("by must be lineno or traceback")

    def matches(s: SiteStat) -> bool:
        tb = s.traceback or ((s.file, s.line),)
        return not contains or any(contains in f"{f}:{n}" for f, n in tb)

    ga = _regroup([s for s in a if matches(s)], by)
    gb = _regroup([s for s in b if matches(s)], by)
    rows = []
    for key in dict.fromkeys([*gb, *ga]):
        sa, sb = ga.get(key), gb.get(key)
        shown = sb or sa
        assert shown is not None
        rows.append(DiffRow(key, sa.size if sa else 0, sb.size if sb else 0,
                            sa.count if sa else 0, sb.count if sb else 0,
                            shown.traceback or ((shown.file, shown.line),)))
    rows.sort(key=lambda r: -r.growth)
    return rows[:top]
