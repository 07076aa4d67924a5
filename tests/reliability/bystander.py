"""A bystander connection for hostile-input and chaos tests: it publishes to its own room while
an attack runs and checks every message comes back, in order, in time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.support.waits import until
from tests.support.wsclient import RawClient


class Bystander:
    """Publishes ``1, 2, 3...`` to ``room`` every ``interval`` s and reads each one back."""

    def __init__(self, client: RawClient, room: str = "bystander", interval: float = 0.02,
                 timeout: float = 5.0) -> None:
        self.client = client
        self.room = room
        self.interval = interval
        self.timeout = timeout
        self.sent = 0
        self.received = 0
        self.worst_rtt = 0.0
        self.errors: list[str] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, url: str, **kw: Any) -> Bystander:
        """Connect, subscribe and start publishing."""
        client = await RawClient.connect(url, headers=kw.pop("headers", None))
        by = cls(client, **kw)
        rep = await client.call("subscribe", by.room)
        assert rep["ok"], rep
        by._task = asyncio.create_task(by._run())
        return by

    async def _run(self) -> None:
        try:
            while True:
                self.sent += 1
                started = time.perf_counter()
                rep = await self.client.call("publish", self.room, data=self.sent,
                                             timeout=self.timeout)
                if not rep["ok"]:
                    self.errors.append(f"publish refused: {rep}")
                    return
                [msg] = await self.client.messages(1, timeout=self.timeout)
                if msg["data"] != self.sent:
                    self.errors.append(f"expected {self.sent}, got {msg['data']}")
                    return
                self.received += 1
                self.worst_rtt = max(self.worst_rtt, time.perf_counter() - started)
                await asyncio.sleep(self.interval)
        except Exception as exc:  # a timeout or a closed connection: the attack reached us
            self.errors.append(repr(exc))

    async def stop(self, min_messages: int = 20) -> dict[str, Any]:
        """Stop, check nothing went wrong, close; returns the figures."""
        # At least one more round trip after the attack, and ``min_messages`` in all.
        target = max(min_messages, self.received + 1)
        # A round trip that never comes is an error of its own (the publish's reply and the
        # message each wait ``timeout``): that ends the wait first, and the assertions below
        # say what it was.
        await until(lambda: self.received >= target or self.errors, 2 * self.timeout + 1.0,
                    step=self.interval, what=f"bystander round trip #{target}")
        assert self._task is not None
        alive = not self._task.done()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()
        assert self.errors == [], self.errors
        assert alive, "the bystander stopped on its own"
        assert self.received >= min_messages, (self.received, self.sent)
        # The one in flight when stopped may be unanswered; every answered one came back.
        assert self.sent - self.received <= 1
        return self.figures()

    def figures(self) -> dict[str, Any]:
        return {"bystander_sent": self.sent, "bystander_received": self.received,
                "bystander_lost": 0 if not self.errors else self.sent - self.received,
                "bystander_worst_rtt_ms": round(self.worst_rtt * 1000, 1)}
