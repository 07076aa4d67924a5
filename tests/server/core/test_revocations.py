"""Revocations without I/O: entries until a time, the later of two kept, expired ones dropped,
the list bounded without ever dropping an entry in force; the fleet order that carries one."""

from __future__ import annotations

import pytest

from wsops.server.core.control import (
    Disconnect,
    Revoke,
    Unsubscribe,
    disconnect_order,
    origin_of,
    parse_order,
    revoke_order,
    unsubscribe_order,
)
from wsops.server.core.protocol import message_payload, text_frame
from wsops.server.core.revocations import Revocations

NOW = 1_000_000.0


def test_a_user_or_a_token_is_revoked_until_its_time() -> None:
    r = Revocations()
    r.add("user", "alice", NOW + 10, NOW)
    r.add("jti", "t-1", NOW + 5, NOW)
    assert r.until("alice", None, NOW) == NOW + 10
    assert r.until("bob", "t-1", NOW) == NOW + 5  # bob's token, revoked on its own
    assert r.until("bob", "t-2", NOW) is None and r.until("bob", None, NOW) is None
    r.add("user", "alice", NOW + 3, NOW)  # an earlier end does not shorten it
    assert r.until("alice", None, NOW + 9) == NOW + 10
    assert r.until("alice", None, NOW + 10) is None and len(r) == 1  # expired: dropped
    r.add("user", "carol", NOW - 1, NOW)  # already over: nothing kept
    assert len(r) == 1
    with pytest.raises(ValueError, match="kind must be one of user, jti"):
        r.add("ip", "1.2.3.4", NOW + 1, NOW)


def test_the_list_is_bounded_and_never_drops_an_entry_in_force() -> None:
    r = Revocations(limit=2)
    r.add("user", "a", NOW + 1, NOW)
    r.add("user", "b", NOW + 100, NOW)
    with pytest.raises(OverflowError, match="2 revocations in force"):
        r.add("user", "c", NOW + 100, NOW)
    r.add("user", "b", NOW + 200, NOW)  # an entry already there is updated
    r.add("user", "c", NOW + 100, NOW + 2)  # "a" expired: room again
    assert sorted(k for _, k in r.entries) == ["b", "c"]
    r.merge([("user", "d", NOW + 5), ("ip", "x", NOW + 5)], NOW + 2)  # full: stops quietly
    assert len(r) == 2 and r.prune(NOW + 150) == 1


def frame(data: bytes) -> bytes:
    return text_frame(message_payload("$wsops:control", 1, "e", data, 0))


def test_orders_travel_as_control_room_messages_and_bad_ones_are_ignored() -> None:
    assert parse_order(frame(disconnect_order("alice", 4002, "bye"))) == Disconnect(
        "alice", 4002, "bye")
    assert parse_order(frame(revoke_order("jti", "t-1", NOW))) == Revoke("jti", "t-1", NOW)
    assert parse_order(frame(unsubscribe_order("alice", "chat:1", "muted"))) == Unsubscribe(
        "alice", "chat:1", "muted")
    for data in (b'{"order":"reboot"}', b'{"order":"revoke","kind":"user"}', b"[1]",
                 b'{"order":"unsubscribe","user":"a","room":"bad room","reason":""}',
                 b'{"order":"unsubscribe","user":"a","room":"r"}',
                 b'{"order":"disconnect","user":"a","code":true,"reason":""}'):
        assert parse_order(frame(data)) is None


def test_an_orders_origin_is_its_messages_sender() -> None:
    order = unsubscribe_order("alice", "r", "x")
    sent = text_frame(message_payload("$wsops:control", 1, "e", order, 0, sender="$node:ab"))
    assert origin_of(sent) == "$node:ab"
    assert parse_order(sent) == Unsubscribe("alice", "r", "x")  # the order itself as before
    assert origin_of(frame(order)) is None  # an older node's: no sender
    assert origin_of(b"\x81\x01[") is None
