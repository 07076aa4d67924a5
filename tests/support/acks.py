"""Counting acknowledged publishes across a failure: a publisher that records every ack, and
the check that a subscriber missed none of them silently."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from tests.support.redisproc import TIMEOUT
from wsops.client import Client, ClientError, Event, Gap, Message


@dataclass
class Publisher:
    """Publishes 0, 1, 2, ... into one room as fast as acks come back; records every ack."""

    client: Client
    room: str
    acked: dict[int, int] = field(default_factory=dict)  # data -> offset
    epochs: dict[int, str] = field(default_factory=dict)  # data -> epoch
    island: set[int] = field(default_factory=set)  # acked by a node cut off from Redis
    refused: int = 0
    sent: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # why publishes were refused

    def __repr__(self) -> str:
        return (f"Publisher({len(self.acked)} acked of {self.sent} sent, {self.refused} "
                f"refused: {self.errors})")

    async def run(self, until_acked: int, within: float, pace: float = 0.0) -> None:
        """Until ``until_acked`` acks or ``within`` seconds; ``pace`` seconds between
        publishes (0: as fast as acks come back)."""
        end = time.monotonic() + within
        while len(self.acked) < until_acked and time.monotonic() < end:
            if pace:
                await asyncio.sleep(pace)
            n, self.sent = self.sent, self.sent + 1
            try:
                ack = await self.client.publish(self.room, n, timeout=2 * TIMEOUT)
            except (ClientError, TimeoutError) as exc:
                self.refused += 1
                why = str(exc)[:80]
                self.errors[why] = self.errors.get(why, 0) + 1
                await asyncio.sleep(0.02)
            else:
                self.acked[n] = ack.offset
                self.epochs[n] = ack.epoch
                if ack.local:
                    self.island.add(n)


def in_room(events: list[Event], room: str) -> list[Event]:
    return [e for e in events if isinstance(e, Message | Gap) and e.room == room]


def stored(events: list[Event]) -> set[int]:
    return {e.data for e in events if isinstance(e, Message)}


def runs(events: list[Event]) -> list[str]:
    """What a subscriber saw, in runs: ``epoch:first-last (data of the first)`` and gaps."""
    runs: list[list[object]] = []
    for e in events:
        if isinstance(e, Gap):
            runs.append([f"Gap({e.last_epoch}:{e.last_offset} -> {e.new_epoch}:{e.new_offset})"])
        elif isinstance(e, Message):
            last = runs[-1] if runs else []
            if len(last) == 4 and last[0] == e.epoch and last[2] == e.offset - 1:
                last[2] = e.offset
            else:
                runs.append([e.epoch, e.offset, e.offset, e.data])
    return [str(r[0]) if len(r) == 1 else f"{r[0]}:{r[1]}-{r[2]} (data {r[3]})" for r in runs]


def never_silent(pub: Publisher, events: list[Event], *, continuous: bool) -> list[Gap]:
    """Every acked message the subscriber lacks lies behind a Gap it was told of (one that
    left the message's epoch before its offset, or resumed in it at or past the offset); no
    (epoch, offset) came twice and offsets grew within each epoch. ``continuous``: offsets
    also went on across epochs (the new master had the room: with replica acks it must).
    Returns the gaps."""
    got = [e for e in events if isinstance(e, Message)]
    gaps = [e for e in events if isinstance(e, Gap)]
    seen = {m.data for m in got}

    def explained(n: int) -> bool:
        epoch, offset = pub.epochs[n], pub.acked[n]
        return any((g.last_epoch == epoch and g.last_offset < offset)  # left the epoch
                   or (g.new_epoch == epoch and g.new_offset >= offset)  # resumed past it
                   for g in gaps)

    unexplained = [n for n in pub.acked
                   if n not in seen and n not in pub.island and not explained(n)]
    assert not unexplained, f"acked, never delivered and behind no Gap: {unexplained[:20]}"
    summary = runs(events)
    keys = [(m.epoch, m.offset) for m in got]
    assert len(keys) == len(set(keys)), f"a message twice: {summary}"
    for epoch in {m.epoch for m in got}:
        offsets = [m.offset for m in got if m.epoch == epoch]
        assert offsets == sorted(offsets), f"out of order in {epoch}: {summary}"
    if continuous:  # a new epoch, the same counter: never an offset again
        offsets = [m.offset for m in got]
        assert offsets == sorted(set(offsets)), f"offsets reused: {summary}"
        in_order = [pub.acked[n] for n in sorted(pub.acked) if n not in pub.island]
        assert in_order == sorted(set(in_order))
    return gaps


