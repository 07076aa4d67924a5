"""WebSocket frames (RFC 6455 section 5), sans-I/O: a server's reader of client frames and the
few control frames a server writes.

The reader is a mixin whose state is three slots of the connection object that uses it (no
parser object, no coroutine, nothing per idle connection but an empty ``bytes``). It enforces
what a server must: every client frame masked, no reserved bits (no extension is negotiated),
known opcodes, unfragmented control frames of at most 125 bytes, continuation frames in order,
and a message size limit checked from the header, before the payload is buffered. Violations
raise ``FrameError`` with the close code to send (1002, or 1009 for size).
"""

from __future__ import annotations

import struct
from typing import Final


def mask_python(mask: bytes, data: bytearray) -> None:
    """XOR ``data`` in place with the 4-byte ``mask`` (the fallback of aiohttp's C function)."""
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    data[:] = (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


try:  # aiohttp's C unmasking (with its own pure-Python fallback)
    from aiohttp._websocket.helpers import websocket_mask as _mask
except ImportError:  # pragma: no cover - aiohttp moved it
    _mask = mask_python


OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_DATA_OPS: Final = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY})
_CONTROL_OPS: Final = frozenset({OP_CLOSE, OP_PING, OP_PONG})

PING: Final = b"\x89\x00"
"""An empty ping, as the server's heartbeat sends it."""

PROTOCOL_ERROR: Final = 1002
INVALID_DATA: Final = 1007
TOO_BIG: Final = 1009
NO_STATUS: Final = 1005
"""What a close frame without a code means (never sent on the wire)."""


class FrameError(Exception):
    """A frame the server must answer with a close ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """An unmasked control frame from the server (payload at most 125 bytes)."""
    return bytes((0x80 | opcode, len(payload))) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with ``code`` and a reason cut to fit the 125-byte control frame."""
    raw = reason.encode()[:123]
    while raw:  # do not cut a UTF-8 sequence in half
        try:
            raw.decode()
            break
        except UnicodeDecodeError:
            raw = raw[:-1]
    return control_frame(OP_CLOSE, struct.pack("!H", code) + raw)


def valid_close_code(code: int) -> bool:
    """A code a peer may send (RFC 6455 7.4; 1004-1006 and 1015 are never on the wire)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a peer's close frame; ``NO_STATUS`` when it has no code."""
    if not payload:
        return NO_STATUS, ""
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        raise FrameError(PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


class FrameReader:
    """Reads client frames into whole messages and control frames.

    ``feed(data, limit)`` returns ``[(opcode, payload), ...]``: ``OP_TEXT``/``OP_BINARY`` with
    the whole (reassembled, unmasked) message of at most ``limit`` bytes, or a control frame.
    Text is not decoded here.
    """

    __slots__ = ("_frag", "_frag_op", "_rbuf")

    def __init__(self) -> None:
        self._rbuf: bytes | bytearray = b""
        self._frag: list[bytes] | None = None  # the fragments of a message in progress
        self._frag_op: int  # the opcode of that message, set with its first fragment

    @property
    def buffered(self) -> int:
        """Bytes received and not yet a whole frame (bounded by the message size limit)."""
        return len(self._rbuf)

    def feed(self, data: bytes, limit: int) -> list[tuple[int, bytes]]:
        rbuf = self._rbuf
        buf: bytes | bytearray
        if rbuf:
            rbuf += data  # a bytearray: appended in place
            buf = rbuf
        else:
            buf = data
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 & 0x70:
                raise FrameError(PROTOCOL_ERROR, "reserved bits set (no extension negotiated)")
            if not b1 & 0x80:
                raise FrameError(PROTOCOL_ERROR, "client frame not masked")
            opcode = b0 & 0x0F
            length = b1 & 0x7F
            head = pos + 2
            if opcode >= 8:
                if opcode not in _CONTROL_OPS:
                    raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
                if not b0 & 0x80:
                    raise FrameError(PROTOCOL_ERROR, "fragmented control frame")
                if length > 125:
                    raise FrameError(PROTOCOL_ERROR, "control frame longer than 125 bytes")
            elif opcode not in _DATA_OPS:
                raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
            elif length == 126:
                if end - head < 2:
                    break
                length = (buf[head] << 8) | buf[head + 1]
                head += 2
            elif length == 127:
                if end - head < 8:
                    break
                length = int.from_bytes(buf[head:head + 8], "big")
                head += 8
            if length > limit:
                raise FrameError(TOO_BIG, f"message bigger than {limit} bytes")
            stop = head + 4 + length
            if stop > end:
                break
            payload = bytearray(buf[head + 4:stop])
            if length:
                _mask(bytes(buf[head:head + 4]), payload)
            pos = stop
            if opcode >= 8 or (opcode and b0 & 0x80 and self._frag is None):
                out.append((opcode, bytes(payload)))  # a control frame or a whole message
            else:
                self._data(b0 & 0x80, opcode, bytes(payload), limit, out)
        if pos == end:
            self._rbuf = b""
        elif pos or buf is not rbuf:
            self._rbuf = bytearray(buf[pos:])
        # else: still one partial frame, appended to in place
        return out

    def _data(self, fin: int, opcode: int, payload: bytes, limit: int,
              out: list[tuple[int, bytes]]) -> None:
        frag = self._frag
        if opcode == OP_CONTINUATION:
            if frag is None:
                raise FrameError(PROTOCOL_ERROR, "continuation frame without a message")
            frag.append(payload)
            if sum(map(len, frag)) > limit:
                raise FrameError(TOO_BIG, f"message bigger than {limit} bytes")
            if fin:
                out.append((self._frag_op, b"".join(frag)))
                self._frag = None
            return
        if frag is not None:
            raise FrameError(PROTOCOL_ERROR, "new message before the last one ended")
        # a first fragment (a whole message with no fragment in progress is served by feed)
        self._frag = [payload]
        self._frag_op = opcode
