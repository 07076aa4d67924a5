"""The per-address connection limit, without a server (live: tests/reliability)."""

from __future__ import annotations

import pytest

from wsops.server.core.address_limit import PerAddressLimit


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^the per-address connection limit must be >= 0$"):
        PerAddressLimit(-1)


def test_unlimited_counts_nothing() -> None:
    lim = PerAddressLimit(0)
    with lim.hold("a"), lim.hold("a"):
        assert lim.full("a") is False and lim.counts == {}
    assert lim.counts == {}


def test_connections_are_counted_per_address_and_released() -> None:
    lim = PerAddressLimit(2)
    assert lim.full("a") is False
    with lim.hold("a"):
        assert lim.counts == {"a": 1} and lim.full("a") is False
        with lim.hold("a"):
            assert lim.counts == {"a": 2}
            assert lim.full("a") is True  # at the limit: the next one is refused
            assert lim.full("b") is False
        assert lim.counts == {"a": 1}
    assert lim.counts == {}  # no entry left for an address with no connection


def test_one_at_the_limit_is_full() -> None:
    lim = PerAddressLimit(1)
    with lim.hold("a"):
        assert lim.full("a") is True
    assert lim.full("a") is False


def test_an_unknown_address_counts_as_the_empty_one() -> None:
    lim = PerAddressLimit(1)
    with lim.hold(None):
        assert lim.counts == {"": 1}
        assert lim.full(None) is True and lim.full("") is True and lim.full("x") is False


def test_the_slot_is_released_when_the_block_fails() -> None:
    lim = PerAddressLimit(3)
    with pytest.raises(RuntimeError), lim.hold("a"):
        raise RuntimeError("handler crashed")
    assert lim.counts == {}
