import os, timeit, sys
from aiohttp._websocket.mask import _websocket_mask_cython as cmask
from aiohttp._websocket.helpers import _websocket_mask_python as pymask
from aiohttp._websocket.reader_c import WebSocketReader, WebSocketDataQueue
payload = os.urandom(100); mask = os.urandom(4)
masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
def xor_int(mask, data):
    n = len(data); m = int.from_bytes(mask * ((n >> 2) + 1), "little") & ((1 << (8 * n)) - 1) if n else 0
    return (int.from_bytes(data, "little") ^ m).to_bytes(n, "little")
M4 = {}
def xor_int_cached(mask, data):  # mask repeated to n bytes; no cache across frames (masks are random)
    n = len(data)
    return (int.from_bytes(data, "little") ^ int.from_bytes((mask * ((n + 3) >> 2))[:n], "little")).to_bytes(n, "little")
def c_mask(mask, data):
    b = bytearray(data); cmask(mask, b); return bytes(b)
def py_translate(mask, data):
    b = bytearray(data); pymask(mask, b); return bytes(b)
for f in (xor_int, xor_int_cached, c_mask, py_translate):
    assert f(mask, masked) == payload, f
N = 200_000
for size in (100, 1000):
    payload = os.urandom(size); masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    for f in (c_mask, xor_int_cached, xor_int, py_translate):
        t = min(timeit.repeat(lambda: f(mask, masked), number=N // (1 if size == 100 else 4), repeat=3))
        print(f"unmask {size:5d} B  {f.__name__:15s} {t / (N // (1 if size == 100 else 4)) * 1e9:7.0f} ns")
