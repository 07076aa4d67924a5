"""What every admin endpoint shares: finite JSON responses and checked request input.

A bad body or query parameter is an HTTP 400 whose text says which field and what range.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from wsops.admin.contract import finite

_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")


def json_response(data: Any, status: int = 200) -> web.Response:
    """``data`` as JSON, non-finite floats as null (``contract.finite``)."""
    return web.json_response(finite(data), status=status,
                             dumps=lambda d: json.dumps(d, default=str, allow_nan=False))


async def read_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body ({} when there is none), else HTTP 400."""
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be a JSON object\n") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object\n")
    return data


def number_field(data: Mapping[str, Any], key: str, default: float, lo: float,
                 hi: float) -> float:
    """``data[key]`` (or ``default``) as a number in ``[lo, hi]``, else HTTP 400."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise web.HTTPBadRequest(text=f"'{key}' must be a number in [{lo}, {hi}]\n")
    return float(value)


def int_query(request: web.Request, key: str, default: int, lo: int, hi: int) -> int:
    """Query parameter ``key`` as an integer in ``[lo, hi]``, else HTTP 400 saying so."""
    raw = request.query.get(key, str(default))
    # ASCII digits only: int() would also take " 5", "1_0" and other scripts' digits.
    value = int(raw) if _INTEGER.fullmatch(raw) else None
    if value is None or not lo <= value <= hi:
        raise web.HTTPBadRequest(text=f"'{key}' must be an integer in [{lo}, {hi}]\n")
    return value
