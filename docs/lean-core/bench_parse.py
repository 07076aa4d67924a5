import os, struct, sys, timeit, json
from aiohttp._websocket.reader_c import WebSocketReader, WebSocketDataQueue
from aiohttp._websocket.mask import _websocket_mask_cython as cmask
from aiohttp import WSMsgType

class Sink(WebSocketDataQueue):
    """No super().__init__: no deque, _limit 0 so the reader never stalls; messages go straight out."""
    __slots__ = ("on_msg",)
    def __init__(self, on_msg): self.on_msg = on_msg
    def feed_data(self, msg, size): self.on_msg(msg)
    def set_exception(self, exc, cause=None): self.on_msg(("error", exc))
    def feed_eof(self): pass

got = []
sink = Sink(got.append)
reader = WebSocketReader(sink, 1 << 20, compress=False, decode_text=True)

def frame(payload, op=0x1, fin=True):
    mask = os.urandom(4); b = bytearray(payload); cmask(mask, b)
    n = len(payload)
    hdr = bytes([0x80 * fin | op]) + (bytes([0x80 | n]) if n < 126 else struct.pack("!BH", 0xFE, n))
    return hdr + mask + bytes(b)

text = json.dumps({"op": "publish", "room": "r1", "id": 7, "data": "x" * 40}).encode()
text = text + b" " * (100 - len(text))
f = frame(text)
print("reader feed_data ->", reader.feed_data(f), got[-1][:2] if got else None)
# split across reads and a close frame
reader.feed_data(f[:3]); reader.feed_data(f[3:] + frame(struct.pack("!H", 1000) + b"bye", 0x8))
print("split+close ->", [(m[0], m[1] if m[0] != WSMsgType.TEXT else len(m[1])) for m in got[-2:]])
reader.feed_data(bytes([0x81, 0x05]) + b"hello")  # unmasked is accepted by aiohttp's reader (it does not enforce the mask bit)
print("unmasked ->", got[-1])

# a small pure-Python parser for client->server frames (text/close/ping/pong, no fragments)
from aiohttp._websocket.mask import _websocket_mask_cython as MASK
class PyParser:
    __slots__ = ("buf", "out")
    def __init__(self, out): self.buf = b""; self.out = out
    def feed(self, data):
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)
        while end - pos >= 6:
            b0, b1 = buf[pos], buf[pos + 1]
            if not b1 & 0x80 or b0 & 0x70: raise ValueError("1002")
            n = b1 & 0x7F; h = pos + 2
            if n == 126:
                if end - pos < 8: break
                n = (buf[h] << 8) | buf[h + 1]; h += 2
            elif n == 127:
                if end - pos < 14: break
                n = int.from_bytes(buf[h:h + 8], "big"); h += 8
            if end - h < 4 + n: break
            payload = bytearray(buf[h + 4:h + 4 + n]); MASK(buf[h:h + 4], payload)
            self.out(b0, payload)
            pos = h + 4 + n
        self.buf = buf[pos:] if pos < end else b""

class PyParserInt(PyParser):
    def feed(self, data):
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)
        while end - pos >= 6:
            b0, b1 = buf[pos], buf[pos + 1]
            if not b1 & 0x80 or b0 & 0x70: raise ValueError("1002")
            n = b1 & 0x7F; h = pos + 2
            if n == 126:
                if end - pos < 8: break
                n = (buf[h] << 8) | buf[h + 1]; h += 2
            elif n == 127:
                if end - pos < 14: break
                n = int.from_bytes(buf[h:h + 8], "big"); h += 8
            if end - h < 4 + n: break
            m = buf[h:h + 4]; p = h + 4
            payload = (int.from_bytes(buf[p:p + n], "little") ^ int.from_bytes((m * ((n + 3) >> 2))[:n], "little")).to_bytes(n, "little")
            self.out(b0, payload)
            pos = p + n
        self.buf = buf[pos:] if pos < end else b""

out = []
pp = PyParser(lambda op, p: out.append((op, p.decode())))
pp.feed(f); assert out[-1][1].encode() == text
pi = PyParserInt(lambda op, p: out.append((op, p.decode())))
pi.feed(f[:5]); pi.feed(f[5:]); assert out[-1][1].encode() == text
N = 100_000
got.clear()
sinkfast = Sink(lambda m: None); rfast = WebSocketReader(sinkfast, 1 << 20, compress=False, decode_text=True)
ppf = PyParser(lambda op, p: p.decode()); pif = PyParserInt(lambda op, p: p.decode())
for name, fn in (("aiohttp C reader (Sink subclass, decode)", lambda: rfast.feed_data(f)),
                 ("pure-Python parser + C mask + decode", lambda: ppf.feed(f)),
                 ("pure-Python parser + int XOR + decode", lambda: pif.feed(f))):
    t = min(timeit.repeat(fn, number=N, repeat=3))
    print(f"parse one 100 B masked text frame: {name:42s} {t / N * 1e9:6.0f} ns")
print("sizes: WebSocketReader", sys.getsizeof(rfast), "Sink", sys.getsizeof(sinkfast), "PyParser", sys.getsizeof(ppf))
