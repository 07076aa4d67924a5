"""The server's frame reader: every rule a server must enforce, and messages that come out
whole however the bytes are split."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.rawws import client_frame
from wsops.server.core.frames import (
    NO_STATUS,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    close_frame,
    mask_python,
    parse_close,
    valid_close_code,
)

LIMIT = 1 << 16


def unmasked(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    return bytes((0x80 | opcode, len(payload))) + payload


def read_all(data: bytes, limit: int = LIMIT) -> list[tuple[int, bytes]]:
    return FrameReader().feed(data, limit)


def test_one_masked_text_frame_of_each_length_encoding() -> None:
    for n in (0, 1, 125, 126, 65535, 65536, 70_000):
        payload = bytes(i % 251 for i in range(n))
        assert read_all(client_frame(payload), 1 << 20) == [(OP_TEXT, payload)]


def test_several_frames_in_one_chunk_and_control_frames_between_fragments() -> None:
    data = (client_frame(b"he", fin=False) + client_frame(b"", OP_PING)
            + client_frame(b"ll", 0x0, fin=False) + client_frame(b"x", OP_PONG)
            + client_frame(b"o", 0x0) + client_frame(b"\x01\x02", OP_BINARY))
    assert read_all(data) == [(OP_PING, b""), (OP_PONG, b"x"), (OP_TEXT, b"hello"),
                              (OP_BINARY, b"\x01\x02")]


@pytest.mark.parametrize(("data", "code", "words"), [
    (unmasked(b"hi"), 1002, "not masked"),
    (bytes((0x80 | 0x40 | OP_TEXT,)) + client_frame(b"x")[1:], 1002, "reserved"),
    (client_frame(b"x", 0x3), 1002, "opcode 3"),
    (client_frame(b"x", 0xB), 1002, "opcode 11"),
    (client_frame(b"", OP_PING, fin=False), 1002, "fragmented control"),
    (client_frame(b"x" * 126, OP_PING), 1002, "125"),
    (client_frame(b"x", 0x0), 1002, "continuation frame without"),
    (client_frame(b"a", fin=False) + client_frame(b"b"), 1002, "before the last one ended"),
    (client_frame(b"x" * (LIMIT + 1)), 1009, "bigger"),
])
def test_what_a_server_must_refuse(data: bytes, code: int, words: str) -> None:
    with pytest.raises(FrameError) as err:
        read_all(data)
    assert err.value.code == code and words in err.value.reason


def test_the_size_limit_is_checked_from_the_header_before_the_payload_arrives() -> None:
    header = struct.pack("!BBQ", 0x81, 0x80 | 127, 1 << 40) + b"mask"
    with pytest.raises(FrameError) as err:
        FrameReader().feed(header, LIMIT)  # not one byte of the terabyte is needed
    assert err.value.code == 1009


def test_fragments_count_together_against_the_limit() -> None:
    frames = client_frame(b"x" * 600, fin=False) + client_frame(b"x" * 600, 0x0, fin=False)
    with pytest.raises(FrameError) as err:
        read_all(frames, 1000)
    assert err.value.code == 1009


def test_a_partial_frame_is_kept_until_its_end_arrives() -> None:
    reader = FrameReader()
    frame = client_frame(b"x" * 1000)
    assert reader.feed(frame[:1], LIMIT) == []
    assert reader.feed(frame[1:500], LIMIT) == []
    assert reader.buffered == 500
    assert reader.feed(frame[500:] + frame[:3], LIMIT) == [(OP_TEXT, b"x" * 1000)]
    assert reader.buffered == 3


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(st.tuples(st.binary(max_size=300), st.integers(1, 4)), max_size=6),
       cuts=st.lists(st.integers(0, 5000), max_size=12))
def test_messages_come_out_whole_however_fragmented_and_split(
    messages: list[tuple[bytes, int]], cuts: list[int]
) -> None:
    wire = b""
    for payload, parts in messages:
        size = -(-len(payload) // parts) or 1
        chunks = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
        for i, chunk in enumerate(chunks):
            wire += client_frame(chunk, OP_TEXT if i == 0 else 0x0, fin=i == len(chunks) - 1)
            if i == 0:
                wire += client_frame(b"p", OP_PING)  # control frames may come between
    reader = FrameReader()
    out: list[tuple[int, bytes]] = []
    last = 0
    for cut in [*sorted(c for c in cuts if c < len(wire)), len(wire)]:
        out += reader.feed(wire[last:cut], LIMIT)
        last = cut
    assert [p for op, p in out if op == OP_TEXT] == [p for p, _ in messages]
    assert [p for op, p in out if op == OP_PING] == [b"p"] * len(messages)
    assert reader.buffered == 0


def test_close_payloads() -> None:
    assert parse_close(b"") == (NO_STATUS, "")
    assert parse_close(struct.pack("!H", 4000) + "bye é".encode()) == (4000, "bye é")
    for bad, code in ((b"\x03", 1002), (struct.pack("!H", 1005), 1002),
                      (struct.pack("!H", 999), 1002), (struct.pack("!H", 1000) + b"\xff", 1007)):
        with pytest.raises(FrameError) as err:
            parse_close(bad)
        assert err.value.code == code
    assert [c for c in (1000, 1004, 1006, 1011, 1015, 2999, 3000, 4999, 5000)
            if valid_close_code(c)] == [1000, 1011, 3000, 4999]


def test_a_close_frame_fits_a_control_frame_and_never_cuts_a_character() -> None:
    frame = close_frame(1008, "é" * 100)
    assert frame[0] == 0x80 | OP_CLOSE and frame[1] <= 125
    assert parse_close(frame[2:]) == (1008, "é" * 61)


def test_wire_values_are_rfc_6455s() -> None:
    assert (OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG) == (0, 1, 2, 8, 9, 10)
    assert NO_STATUS == 1005


def test_the_pure_python_unmasking_equals_aiohttps() -> None:
    from aiohttp._websocket.helpers import websocket_mask

    for n in (0, 1, 3, 4, 5, 7, 8, 9, 1000):
        data = bytes(range(256)) * 4
        ours, theirs = bytearray(data[:n]), bytearray(data[:n])
        mask_python(b"\x01\x80\xfe\x37", ours)
        websocket_mask(b"\x01\x80\xfe\x37", theirs)
        assert ours == theirs and (n == 0 or ours != data[:n])


def test_boundaries_of_sizes() -> None:
    assert read_all(client_frame(b"p" * 125, OP_PING)) == [(OP_PING, b"p" * 125)]
    assert read_all(client_frame(b"x" * 100), 100) == [(OP_TEXT, b"x" * 100)]
    whole = client_frame(b"x" * 50, fin=False) + client_frame(b"y" * 50, 0x0)
    assert read_all(whole, 100) == [(OP_TEXT, b"x" * 50 + b"y" * 50)]
    with pytest.raises(FrameError):
        read_all(client_frame(b"x" * 101), 100)


def test_a_bad_header_is_refused_as_soon_as_its_two_bytes_arrive() -> None:
    for header in (b"\x81\x01", b"\x83\x81", b"\xc1\x81"):  # unmasked, opcode 3, RSV1
        with pytest.raises(FrameError):
            FrameReader().feed(header, LIMIT)


def test_an_unmasked_frame_of_odd_length_is_refused_too() -> None:
    with pytest.raises(FrameError, match="not masked"):
        read_all(unmasked(b"x"))


def test_a_close_frame_is_read_as_a_control_frame() -> None:
    close = client_frame(b"\x03\xe8bye", OP_CLOSE)
    assert read_all(client_frame(b"a", fin=False) + close) == [(OP_CLOSE, b"\x03\xe8bye")]
    with pytest.raises(FrameError, match="unknown opcode 7"):
        read_all(client_frame(b"", 0x7))


@pytest.mark.parametrize("n", [125, 126, 127, 65535, 65536])
def test_every_split_of_the_header_and_mask(n: int) -> None:
    frame = client_frame(b"z" * n, OP_BINARY)
    for cut in range(1, 16):
        reader = FrameReader()
        assert reader.feed(frame[:cut], 1 << 20) == []
        assert reader.feed(frame[cut:], 1 << 20) == [(OP_BINARY, b"z" * n)]


def test_errors_carry_their_reason_and_a_1_byte_close_payload_is_named() -> None:
    err = FrameError(1002, "why")
    assert str(err) == "why" and err.code == 1002
    with pytest.raises(FrameError, match="1-byte"):
        parse_close(b"\x03")


def test_close_codes_at_the_edges_of_each_range() -> None:
    valid = [1000, 1001, 1002, 1003, 1007, 1008, 1014, 3000, 3999, 4000, 4999]
    invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
    assert all(valid_close_code(c) for c in valid)
    assert not any(valid_close_code(c) for c in invalid)


def test_a_close_reason_of_123_bytes_is_kept_whole_and_longer_ones_are_cut() -> None:
    assert parse_close(close_frame(1000, "r" * 123)[2:]) == (1000, "r" * 123)
    assert parse_close(close_frame(1000, "r" * 200)[2:]) == (1000, "r" * 123)


def test_a_text_message_in_three_fragments_comes_out_whole() -> None:
    # The first fragment's header byte is 0x01 (text, FIN clear): only FIN says "whole".
    wire = (client_frame(b"ab", OP_TEXT, fin=False) + client_frame(b"cd", 0x0, fin=False)
            + client_frame(b"ef", 0x0, fin=True))
    assert read_all(wire) == [(OP_TEXT, b"abcdef")]
