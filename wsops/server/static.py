"""The browser client, served by the server itself so a page can load it without a bundler.

``GET /static/wsops-client.js`` (an ES module) and ``GET /static/wsops-client.d.ts`` (its
TypeScript definitions), with CORS open to any origin: the module is public code, and a page
served from another origin imports it with ``import { WsopsClient } from "http://node/static/..."``.
Only these files are served (no directory listing, no paths from the request).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from aiohttp import web

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"
CLIENT_PATH: Final = "/static/wsops-client.js"
CLIENT_FILES: Final = {
    CLIENT_PATH: ("wsops-client.js", "text/javascript; charset=utf-8"),
    "/static/wsops-client.d.ts": ("wsops-client.d.ts", "application/typescript; charset=utf-8"),
}


def add_client_routes(app: web.Application) -> None:
    """Serve the client files on ``app`` (revalidated on every load: ETag, 304)."""
    for path, (name, content_type) in CLIENT_FILES.items():
        app.router.add_get(path, _file_handler(STATIC_DIR / name, content_type))


def _file_handler(
    file: Path, content_type: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    headers = {
        "Content-Type": content_type,
        "Access-Control-Allow-Origin": "*",
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }

    async def handler(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(file, headers=headers)

    return handler
