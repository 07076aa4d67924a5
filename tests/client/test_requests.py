"""The request book: ids, bounded queue, at-least-once requeue after a dropped connection."""

from __future__ import annotations

import pytest

from wsops.client import wire
from wsops.client.errors import ClientClosed, QueueFull
from wsops.client.requests import RequestBook


async def test_ids_increase_and_requests_go_out_in_order() -> None:
    book = RequestBook(10)
    a = book.add({"op": "publish", "room": "r", "data": 1})
    b = book.add({"op": "publish", "room": "r", "data": 2})
    assert (a.id, b.id) == (1, 2)
    assert a.frame["id"] == 1
    assert book.next_to_send() is a
    assert book.next_to_send() is b
    assert book.next_to_send() is None


async def test_what_json_cannot_hold_fails_its_own_request_at_once() -> None:
    book = RequestBook(10)
    for bad in (float("nan"), [1, float("inf")], {"x": float("-inf")}):
        with pytest.raises(ValueError, match=r"cannot send 'publish'.*no NaN or infinities"):
            book.add({"op": "publish", "room": "r", "data": bad})
    with pytest.raises(TypeError):
        book.add({"op": "publish", "room": "r", "data": {1, 2}})
    ok = book.add({"op": "publish", "room": "r", "data": 1.5})
    assert book.next_to_send() is ok
    assert ok.text == f'{{"op":"publish","room":"r","data":1.5,"id":{ok.id}}}'


async def test_queue_full_raises_at_once_and_urgent_requests_bypass_the_bound() -> None:
    book = RequestBook(2)
    book.add({"op": "publish", "room": "r"})
    book.add({"op": "publish", "room": "r"})
    with pytest.raises(QueueFull):
        book.add({"op": "publish", "room": "r"})
    urgent = book.add({"op": "subscribe", "room": "r"}, urgent=True, resend=False)
    assert book.next_to_send() is urgent
    book.next_to_send()
    book.add({"op": "publish", "room": "r"})  # room again once one was sent


async def test_reply_resolves_the_matching_request() -> None:
    book = RequestBook(10)
    a = book.add({"op": "presence", "room": "r"})
    book.next_to_send()
    reply = wire.Reply(a.id, True, {"users": []})
    assert book.resolve(reply) is a
    assert a.future.result() is reply
    assert book.resolve(reply) is None
    assert len(book) == 0


async def test_unanswered_requests_are_requeued_first_in_id_order() -> None:
    book = RequestBook(10)
    a = book.add({"op": "publish", "room": "r", "data": "a"})
    b = book.add({"op": "publish", "room": "r", "data": "b"})
    book.next_to_send()
    book.next_to_send()
    c = book.add({"op": "publish", "room": "r", "data": "c"})  # queued while disconnected
    internal = book.add({"op": "subscribe", "room": "r"}, urgent=True, resend=False)
    book.next_to_send()  # the internal resubscribe goes out and is then lost
    dropped = book.connection_lost()
    assert dropped == [internal] and internal.future.cancelled()
    assert [book.next_to_send() for _ in range(3)] == [a, b, c]


async def test_withdrawn_requests_are_never_sent() -> None:
    book = RequestBook(10)
    a = book.add({"op": "publish", "room": "r"})
    b = book.add({"op": "publish", "room": "r"})
    book.withdraw(a)
    assert book.next_to_send() is b
    book.withdraw(b)
    assert book.resolve(wire.Reply(b.id, True)) is None


async def test_queued_for_finds_a_pending_subscribe() -> None:
    book = RequestBook(10)
    book.add({"op": "subscribe", "room": "r"})
    assert book.queued_for("subscribe", "r")
    assert not book.queued_for("subscribe", "other")


async def test_fail_all_fails_every_open_request() -> None:
    book = RequestBook(10)
    a = book.add({"op": "publish", "room": "r"})
    b = book.add({"op": "publish", "room": "r"})
    book.next_to_send()
    book.fail_all(ClientClosed("bye"))
    for p in (a, b):
        with pytest.raises(ClientClosed):
            p.future.result()
    assert len(book) == 0
