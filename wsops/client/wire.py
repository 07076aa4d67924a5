"""Wire format of protocol v1 as the client sees it: encode requests, decode server frames.

Pure. Decoding validates just enough to hand typed values to the rest of the client; a frame
that does not fit raises ``ProtocolViolation`` so the connection code can log and skip it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from wsops.client.errors import ProtocolViolation, ServerError
from wsops.client.events import Message, PresenceEvent, PublishAck, SubscribeResult

MAX_ID: Final = 2**53
SUBPROTOCOL: Final = "wsops.v1"
"""The protocol version this client speaks, offered as a WebSocket subprotocol: a server of this
version answers with it, one from before the negotiation answers without (and is spoken to
the same), one that does not speak it refuses the upgrade with HTTP 400."""
# allow_nan=False: NaN and the infinities are not JSON; the server refuses them (bad_request).
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_loads = json.JSONDecoder().decode


@dataclass(frozen=True, slots=True)
class Reply:
    """A ``reply`` frame: ``fields`` holds everything but ``op``, ``id`` and ``ok``."""

    id: int | None
    ok: bool
    fields: dict[str, Any] = field(default_factory=dict)

    def error(self) -> ServerError:
        """The failure of an ``ok: false`` reply as an exception."""
        err = self.fields.get("error")
        if isinstance(err, dict):
            return ServerError(str(err.get("code", "unknown")), str(err.get("message", "")))
        return ServerError("unknown", "failed reply without an error object")


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """The server took this connection out of ``room`` (its server API's ``unsubscribe``)."""

    room: str
    reason: str


ServerFrame = Reply | Message | PresenceEvent | Unsubscribed


def encode(frame: dict[str, Any]) -> str:
    """Compact JSON text of one client frame; ValueError for what JSON cannot hold (NaN,
    infinities, ...), TypeError for what it cannot encode at all."""
    try:
        return _dumps(frame)
    except ValueError as exc:
        raise ValueError(f"cannot send {frame.get('op')!r}: {exc} (JSON has no NaN or "
                         "infinities)") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def decode(text: str | bytes) -> ServerFrame | None:
    """Parse one server frame; None for an ``op`` this client does not know (forward compat)."""
    try:
        obj = _loads(text if isinstance(text, str) else text.decode())
    except (ValueError, RecursionError) as exc:
        raise ProtocolViolation(f"frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolViolation("frame is not a JSON object")
    op = obj.get("op")
    if op == "message":
        room, offset, epoch = obj.get("room"), obj.get("offset"), obj.get("epoch")
        if not (isinstance(room, str) and isinstance(offset, int) and isinstance(epoch, str)):
            raise ProtocolViolation("message needs 'room', 'offset' and 'epoch'")
        return Message(room, offset, epoch, obj.get("data"), _ts(obj.get("ts")),
                       _sender(obj.get("from")))
    if op == "reply":
        req_id = obj.get("id")
        ok = obj.get("ok")
        if not isinstance(ok, bool) or (req_id is not None and not _is_int(req_id)):
            raise ProtocolViolation("reply needs 'ok' and an integer or null 'id'")
        rest = {k: v for k, v in obj.items() if k not in ("op", "id", "ok")}
        return Reply(req_id, ok, rest)
    if op in ("join", "leave"):
        room, user = obj.get("room"), obj.get("user")
        if not (isinstance(room, str) and isinstance(user, str)):
            raise ProtocolViolation(f"{op} needs 'room' and 'user'")
        return PresenceEvent("join" if op == "join" else "leave", room, user)
    if op == "unsubscribed":
        room, reason = obj.get("room"), obj.get("reason", "")
        if not (isinstance(room, str) and isinstance(reason, str)):
            raise ProtocolViolation("unsubscribed needs 'room' (and a string 'reason')")
        return Unsubscribed(room, reason)
    return None


def _sender(value: Any) -> str | None:
    """A message's ``from``: the server-attested sender, when it is a string."""
    return value if isinstance(value, str) else None


def _ts(value: object) -> int:
    return value if _is_int(value) else 0  # type: ignore[return-value]


def _position(fields: dict[str, Any]) -> tuple[int, str]:
    offset, epoch = fields.get("offset"), fields.get("epoch")
    if not isinstance(offset, int) or isinstance(offset, bool) or not isinstance(epoch, str):
        raise ProtocolViolation("reply needs integer 'offset' and string 'epoch'")
    return offset, epoch


def subscribe_result(room: str, reply: Reply) -> SubscribeResult:
    """The typed result of a successful ``subscribe`` reply."""
    offset, epoch = _position(reply.fields)
    recovered = reply.fields.get("recovered")
    return SubscribeResult(room, offset, epoch, recovered if isinstance(recovered, bool) else None)


def publish_ack(room: str, reply: Reply) -> PublishAck:
    """The typed result of a successful ``publish`` reply."""
    offset, epoch = _position(reply.fields)
    return PublishAck(room, offset, epoch, reply.fields.get("local") is True)


def presence_users(reply: Reply) -> list[str]:
    """The user ids of a successful ``presence`` reply."""
    users = reply.fields.get("users")
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise ProtocolViolation("presence reply needs 'users': a list of strings")
    return list(users)


def history_messages(room: str, reply: Reply) -> list[Message]:
    """The messages of a successful ``history`` reply, oldest first."""
    raw = reply.fields.get("messages")
    if not isinstance(raw, list):
        raise ProtocolViolation("history reply needs 'messages': a list")
    out: list[Message] = []
    for item in raw:
        if not isinstance(item, dict):
            raise ProtocolViolation("history entries must be objects")
        offset, epoch = _position(item)
        out.append(Message(room, offset, epoch, item.get("data"), _ts(item.get("ts")),
                           _sender(item.get("from"))))
    return out
