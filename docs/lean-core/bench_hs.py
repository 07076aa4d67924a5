import asyncio, timeit, base64, hashlib
from aiohttp import web
from aiohttp.web_server import Server
REQ = (b"GET /ws?token=abc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
       b"User-Agent: lean-measure/1\r\nOrigin: http://127.0.0.1\r\n\r\n")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def own_parse(buf):
    head, _, tail = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, target, version = lines[0].split(b" ", 2)
    h = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        h[k.strip().lower()] = v.strip()
    ok = (method == b"GET" and version == b"HTTP/1.1" and h.get(b"upgrade", b"").lower() == b"websocket"
          and b"upgrade" in h.get(b"connection", b"").lower() and h.get(b"sec-websocket-version") == b"13")
    accept = base64.b64encode(hashlib.sha1(h[b"sec-websocket-key"] + GUID).digest())
    return ok, target, h, accept, tail
async def main():
    loop = asyncio.get_running_loop()
    srv = Server(lambda r: None, loop=loop)
    N = 20000
    t = min(timeit.repeat(lambda: srv(), number=N, repeat=3)) / N
    print(f"RequestHandler() construction (incl. HttpRequestParser): {t * 1e6:.1f} us")
    rh = srv()
    def feed():
        p = rh._parser; p.feed_data(REQ)
    from aiohttp._http_parser import HttpRequestParser
    def fresh_parse():
        p = HttpRequestParser(rh, loop, 2 ** 16, max_line_size=8190, max_field_size=8190, max_headers=128)
        return p.feed_data(REQ)
    t = min(timeit.repeat(fresh_parse, number=N, repeat=3)) / N
    print(f"HttpRequestParser() + feed_data(upgrade request): {t * 1e6:.1f} us")
    t = min(timeit.repeat(lambda: own_parse(REQ), number=N, repeat=3)) / N
    print(f"pure-Python upgrade parse + accept key: {t * 1e6:.1f} us")
asyncio.run(main())
