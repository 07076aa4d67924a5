"""The one definition of memory per connection (``wsops.memory_per_connection``)."""

from __future__ import annotations

from pathlib import Path

import wsops
from wsops.memory_per_connection import (
    MIN_CONNECTIONS,
    NOT_SHOWN,
    memory_per_connection,
    shown,
)


def test_it_is_rss_above_the_baseline_per_connection() -> None:
    mib = 2**20
    assert memory_per_connection(60 * mib, 40 * mib, 1000) == 20 * mib / 1000
    assert memory_per_connection(60 * mib, 40 * mib, 0) == 0.0
    assert memory_per_connection(30 * mib, 40 * mib, 10) == 0.0  # RSS handed back below it


def test_people_see_it_from_min_connections_up() -> None:
    assert MIN_CONNECTIONS == 100
    assert NOT_SHOWN == "n/a (fewer than 100 connections)"
    assert shown(2048.0, 100) == 2048.0
    assert shown(2048.0, 99) is None
    assert shown(None, 5000) is None
    assert shown(2048.0, None) is None


def test_the_fleet_page_shows_it_from_the_same_count() -> None:
    static = Path(wsops.__file__).parent / "static" / "fleet"
    js = (static / "fleet.js").read_text()
    assert f"const MEMORY_MIN_CONNECTIONS = {MIN_CONNECTIONS};" in js
    assert f"shown from {MIN_CONNECTIONS} connections up" in (static / "index.html").read_text()
