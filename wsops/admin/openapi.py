"""The OpenAPI 3.1 document of a node's admin listener, built from ``wsops.admin.contract``.

Response documents are the contract's TypedDicts, walked with ``typing.get_type_hints`` (one
closed ``components.schemas`` object each: a field missing from a TypedDict fails the schema
check rather than passing unnoticed); ``_routes`` below adds what the types cannot say: every
path and method, query parameters, request bodies with the ranges the handlers enforce, and
every status an operation answers. Each GET also answers HEAD (aiohttp adds it); HEAD is not
listed.

Served at ``GET /admin/openapi.json`` (``api.add_admin_api``) and committed as
``docs/admin-openapi.json``; regenerate it after changing the contract or a route with::

    python -m wsops.admin.openapi > docs/admin-openapi.json

``tests/admin/test_openapi.py`` checks that file is what this module builds, that the document
and a live node's router list the same routes, and fuzzes a live node against the document
(schemathesis). The output is deterministic: keys sorted, ``required`` sorted.

The bounds (``MAX_TOP_ROOMS``, the sendable close codes, the drain ranges) come from
``contract``, as the handlers' do; the tests check each documented range is the handler's at
both ends. May import: ``wsops.admin`` modules other than ``api``.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, get_type_hints

from wsops.admin import contract, heap, profiling
from wsops.admin.access import ADMIN_TOKEN_ENV, COOKIE_NAME
from wsops.admin.contract import DRAIN_LIMITS, MAX_TOP_ROOMS, SENDABLE_CLOSE_CODES
from wsops.admin.fleetpage import ASSETS
from wsops.admin.openapi_parts import HTML, TEXT, SchemaBuilder
from wsops.admin.openapi_parts import bad_input as _bad_input
from wsops.admin.openapi_parts import body as _body
from wsops.admin.openapi_parts import int_range as _int_range
from wsops.admin.openapi_parts import json_content as _json
from wsops.admin.openapi_parts import query as _query
from wsops.admin.openapi_parts import ref as _ref
from wsops.admin.openapi_parts import text_content as _text

OPENAPI_VERSION = "3.1.0"
DOCUMENT_VERSION = "1"
"""``info.version``: raise it when a document or a route changes incompatibly."""

def _range(key: str) -> dict[str, float]:
    low, high = DRAIN_LIMITS[key]
    return {"minimum": low, "maximum": high}


DRAIN_BODY: dict[str, dict[str, Any]] = {
    "batch": {"type": "integer", **_range("batch"),
              "description": "Connections closed per batch."},
    "interval": {"type": "number", **_range("interval"),
                 "description": "Seconds between batches."},
    "deadline": {"type": "number", **_range("deadline"),
                 "description": "Seconds after which connections still open are dropped."},
    "spread": {"type": "number", **_range("spread"),
               "description": "Seconds over which each closed client is asked to spread its "
               "reconnect (a reconnect=MS hint in the 1012 close reason, PROTOCOL.md); 0 asks "
               "nothing."},
    "code": {"type": "integer", "description": "WebSocket close code sent: one a server may "
             "send (RFC 6455 7.4) or an application code (3000-4999).",
             "anyOf": [{"enum": list(SENDABLE_CLOSE_CODES)},
                       {"minimum": 3000, "maximum": 4999}]},
}
"""``POST /admin/drain``: each ``DrainOptions`` field, optional, within ``api.drain_options``'s
ranges (one entry per field: the build fails on a field without one)."""
MAX_LEASE_ASKED = 86400
"""``POST /admin/profile/start``: ``lease_seconds`` accepted up to this (granted up to
``profiling.MAX_LEASE``)."""

READ = "read"
WRITE = "write"
OPEN = "open"
PAGE = "page"


def _routes(b: SchemaBuilder) -> list[dict[str, Any]]:
    """Every operation of a node's admin listener: method, path, how it is guarded, and its
    parameters, body and responses (the auth and connection-cap answers are added by
    ``build_document``)."""
    drain_fields = set(get_type_hints(contract.DrainOptions))
    if drain_fields != set(DRAIN_BODY):
        raise ValueError(f"DRAIN_BODY must bound every DrainOptions field: {drain_fields}")
    drain_body = {"type": "object", "properties": DRAIN_BODY,
                  "description": "Drain options; a field left out takes the node's default "
                                 "(``wsops serve --drain-*``). Other fields are ignored."}
    start_body = {"type": "object", "description": "Other fields are ignored.", "properties": {
        "frames": {**_int_range(1, profiling.MAX_FRAMES, 10),
                   "description": "Traceback frames tracemalloc keeps (when this session "
                                  "starts it)."},
        "lease_seconds": {"type": "number", "minimum": 1, "maximum": MAX_LEASE_ASKED,
                          "default": profiling.DEFAULT_LEASE,
                          "description": "Seconds the session lives unless renewed by a "
                                         f"sample (granted up to {profiling.MAX_LEASE:g})."}}}
    debug_body = {"type": "object", "description": "Exactly one of user, room, connection; "
                  "other fields are ignored.",
                  "oneOf": [{"required": [kind]} for kind in contract.DEBUG_KINDS],
                  "properties": {
        **{kind: {"type": "string", "minLength": 1, "maxLength": 256,
                  "description": f"The {kind} to watch."} for kind in contract.DEBUG_KINDS},
        "seconds": {"type": "number", "minimum": 0.001,
                    "maximum": contract.DEBUG_MAX_SECONDS, "default": 600,
                    "description": "How long the switch stays on (then it turns itself "
                                   "off)."}}}
    debug_stop_body = {"type": "object", "description": "Other fields are ignored.",
                       "properties": {"id": {
                           "type": ["string", "null"],
                           "description": "The target (kind:value, e.g. user:alice); left "
                                          "out or null: every target."}}}
    stop_body = {"type": "object", "description": "Other fields are ignored.", "properties": {
        "session": {"type": ["string", "null"],
                    "description": "The session to end; left out or null: every session."}}}
    return [
        {"path": "/healthz", "method": "get", "guard": OPEN, "tag": "health",
         "id": "healthz", "summary": "The process runs.",
         "responses": {200: _json(b.of(contract.Health), "Alive.")}},
        {"path": "/readyz", "method": "get", "guard": OPEN, "tag": "health",
         "id": "readyz", "summary": "Whether the node should receive traffic.",
         "responses": {200: _json(b.of(contract.Readiness), "Ready."),
                       503: _json(b.of(contract.Readiness), "Not ready: the reasons.")}},
        {"path": "/metrics", "method": "get", "guard": OPEN, "tag": "metrics",
         "id": "metrics", "summary": "Prometheus exposition; OpenMetrics (with exemplars) "
         "when the Accept header asks for application/openmetrics-text.",
         "responses": {200: {"description": "The node's metrics.", "content": {
             TEXT: {"schema": {"type": "string"}},
             "application/openmetrics-text": {"schema": {"type": "string"}}}}}},
        {"path": "/", "method": "get", "guard": PAGE, "tag": "fleet page",
         "id": "fleet_page", "summary": "The fleet page (HTML).",
         "parameters": [_query("token", {"type": "string"},
                               f"The admin token ({ADMIN_TOKEN_ENV}): sets the page cookie "
                               "and redirects to / (303); a wrong one gets the token form.")],
         "responses": {200: _text("The page.", HTML),
                       303: {"description": "Token accepted: the page cookie is set, the "
                                            "token leaves the address bar."}}},
        {"path": "/admin/ui/{name}", "method": "get", "guard": READ, "tag": "fleet page",
         "id": "fleet_asset", "summary": "The fleet page's assets.",
         "parameters": [{"name": "name", "in": "path", "required": True,
                         "schema": {"type": "string", "enum": sorted(ASSETS)}}],
         "responses": {200: {"description": "The asset.", "content": {
             media: {"schema": {"type": "string"}} for media in sorted(set(ASSETS.values()))}},
             404: _text("No such asset.")}},
        {"path": "/admin/fleet", "method": "get", "guard": READ, "tag": "fleet page",
         "id": "fleet", "summary": "This node and, in a fleet, its peers' last summaries.",
         "responses": {200: _json(b.of(contract.FleetSnapshot), "The fleet.")}},
        {"path": "/admin/stats", "method": "get", "guard": READ, "tag": "node",
         "id": "stats", "summary": "The node's figures.",
         "responses": {200: _json(b.of(contract.Stats), "The figures.")}},
        {"path": "/admin/connections", "method": "get", "guard": READ, "tag": "node",
         "id": "connections", "summary": "Open connections, per route, and the biggest rooms.",
         "parameters": [_query("top", _int_range(1, MAX_TOP_ROOMS, 20), "Rooms listed.")],
         "responses": {200: _json(b.of(contract.Connections), "The connections."),
                       400: _bad_input("'top'")}},
        {"path": "/admin/flow", "method": "get", "guard": READ, "tag": "node",
         "id": "flow", "summary": "Where the node's messages go: the busiest rooms' traffic "
         "in and out (cumulative counters; rates from two readings).",
         "parameters": [_query("top", _int_range(1, MAX_TOP_ROOMS, 20), "Rooms listed.")],
         "responses": {200: _json(b.of(contract.FlowSnapshot), "The busiest rooms."),
                       400: _bad_input("'top'"),
                       404: _text("The node has no rooms (a plain instrumented app).")}},
        {"path": "/admin/drain", "method": "get", "guard": READ, "tag": "drain",
         "id": "drain_status", "summary": "The drain's progress.",
         "responses": {200: _json(b.of(contract.DrainProgress),
                                  "The drain, and its closes batch by batch.")}},
        {"path": "/admin/drain", "method": "post", "guard": WRITE, "tag": "drain",
         "id": "drain_start", "summary": "Close the node's connections in batches and refuse "
         "new ones (readiness turns false).",
         "body": _body(drain_body, "Drain options (no body: the defaults)."),
         "responses": {202: _json(b.of(contract.DrainStarted),
                                  "Started, or already under way (``started`` false)."),
                       400: _bad_input("A body field")}},
        {"path": "/admin/drain/cancel", "method": "post", "guard": WRITE, "tag": "drain",
         "id": "drain_cancel", "summary": "Stop a drain: the node takes connections again.",
         "responses": {200: _json(b.of(contract.DrainCancelled), "The drain.")}},
        {"path": "/admin/profile", "method": "get", "guard": READ, "tag": "profiling",
         "id": "profile_state", "summary": "tracemalloc's state and the open sessions.",
         "responses": {200: _json(b.of(contract.ProfileState), "The state.")}},
        {"path": "/admin/profile/start", "method": "post", "guard": WRITE, "tag": "profiling",
         "id": "profile_start", "summary": "Open a leased profiling session (tracemalloc on "
         "if it is off).",
         "body": _body(start_body, "Session options (no body: the defaults)."),
         "responses": {200: _json(b.of(contract.ProfileStarted), "The session."),
                       400: _bad_input("A body field"),
                       409: _text(f"{profiling.MAX_SESSIONS} sessions are open already: the "
                                  "text says how to end one.")}},
        {"path": "/admin/profile/sample", "method": "get", "guard": READ, "tag": "profiling",
         "id": "profile_sample", "summary": "One heap sample: traced memory by site, object "
         "counts by type, WebSocket and app leak checks.",
         "parameters": [
             _query("group", {"type": "string", "enum": list(heap.GROUPS),
                              "default": heap.GROUPS[0]}, "Sites per line or per path."),
             _query("top", _int_range(1, heap.MAX_TOP, 20), "Sites listed (the biggest, "
                    "and as many grown most)."),
             _query("types", _int_range(1, profiling.MAX_TYPES, 30), "Object types listed."),
             _query("session", {"type": "string"}, "A session whose lease this renews.")],
         "responses": {200: _json(b.of(contract.ProfileSample), "The sample."),
                       400: _bad_input("A query parameter")}},
        {"path": "/admin/profile/stop", "method": "post", "guard": WRITE, "tag": "profiling",
         "id": "profile_stop", "summary": "End a session (or all); tracemalloc off when wsops "
         "started it and no session is left.",
         "body": _body(stop_body, "The session (no body: every session)."),
         "responses": {200: _json(b.of(contract.ProfileStopped), "The state after."),
                       400: _bad_input("'session'")}},
        {"path": "/admin/debug", "method": "get", "guard": READ, "tag": "debug",
         "id": "debug_state", "summary": "What the node's debug switch watches now.",
         "responses": {200: _json(b.of(contract.DebugState), "The targets."),
                       404: _text("The node has no debug switch (a plain instrumented app).")}},
        {"path": "/admin/debug", "method": "post", "guard": WRITE, "tag": "debug",
         "id": "debug_start", "summary": "Watch one user, room or connection for a bounded "
         "time: its frames logged at DEBUG, its publishes traced whatever the sample ratio.",
         "body": {**_body(debug_body, "What to watch, and for how long."), "required": True},
         "responses": {200: _json(b.of(contract.DebugStarted), "Watched (again: its time "
                                  "starts over)."),
                       400: _bad_input("A body field"),
                       404: _text("The node has no debug switch (a plain instrumented app)."),
                       409: _text(f"{contract.DEBUG_MAX_TARGETS} targets are on already: "
                                  "stop one first.")}},
        {"path": "/admin/debug/stop", "method": "post", "guard": WRITE, "tag": "debug",
         "id": "debug_stop", "summary": "Turn a debug target off (or all of them).",
         "body": _body(debug_stop_body, "The target (no body: every target)."),
         "responses": {200: _json(b.of(contract.DebugStopped), "The targets left."),
                       400: _bad_input("'id'"),
                       404: _text("The node has no debug switch (a plain instrumented app).")}},
        {"path": "/admin/tap", "method": "get", "guard": READ, "tag": "debug",
         "id": "tap", "summary": "A live stream (one JSON object per line) of one user's, "
         "room's or connection's requests, frames written to it, room messages and "
         "connections opened and closed: rate-capped, payloads left out unless asked for.",
         "parameters": [
             *(_query(kind, {"type": "string", "minLength": 1, "maxLength": 256},
                      f"The {kind} to watch (exactly one of user, room, connection).")
               for kind in contract.DEBUG_KINDS),
             _query("payloads", {"type": "string", "enum": ["true", "false"],
                                 "default": "false"},
                    "Include frames (cut to 1 KiB); needs an admin token set on the node."),
             _query("rate", {"type": "number", "minimum": 1,
                             "maximum": contract.TAP_MAX_RATE, "default": 20},
                    "Events per second at most; more are dropped and counted."),
             _query("seconds", {"type": "number", "minimum": 1,
                                "maximum": contract.TAP_MAX_SECONDS,
                                "default": contract.TAP_MAX_SECONDS},
                    "How long the stream lasts.")],
         "responses": {200: {"description": "The stream: a ``tap`` line, then events, a "
                             "``stats`` line (sent, dropped) every "
                             f"{contract.TAP_STATS_SECONDS:g} s, an ``end`` line.",
                             "content": {"application/x-ndjson": {"schema": {
                                 "type": "string"}}}},
                       400: _bad_input("A query parameter"),
                       403: _text("payloads=true on a node without an admin token, or no "
                                  "token is set and the caller is not on loopback."),
                       404: _text("The node has no debug switch (a plain instrumented app)."),
                       409: _text("As many taps are open as the node serves.")}},
        {"path": "/admin/openapi.json", "method": "get", "guard": READ, "tag": "node",
         "id": "openapi", "summary": "This document.",
         "responses": {200: _json({"type": "object"}, "The OpenAPI document.")}},
    ]


def build_document() -> dict[str, Any]:
    """The admin listener's OpenAPI document (a fresh dict)."""
    b = SchemaBuilder()
    paths: dict[str, dict[str, Any]] = {}
    routes = _routes(b)
    for route in routes:
        responses = dict(route["responses"])
        guard = route["guard"]
        if guard != OPEN:
            responses[401] = (_text("The token form (or a wrong token).", HTML) if guard == PAGE
                              else _text(f"A token is set ({ADMIN_TOKEN_ENV}) and the request "
                                         "has none, a wrong one, or only the page cookie for "
                                         "a POST."))
            responses.setdefault(403, _text("No token is set and the caller is not on "
                                            "loopback."))
        if "body" in route:
            responses[413] = _text("Body over 1 MiB.")
        responses.setdefault(503, _ref("AtCapacity", "responses"))
        if "$ref" not in responses[503]:  # /readyz: its own 503, or the listener's
            responses[503]["content"][TEXT] = {"schema": {"type": "string"}}
        # {}: no credentials (loopback, no token set); the cookie opens reads only.
        security: list[dict[str, list[str]]] = (
            [] if guard == OPEN else [{"adminToken": []}, {}] if guard == WRITE
            else [{"adminToken": []}, {"pageCookie": []}, {}])
        op: dict[str, Any] = {
            "operationId": route["id"], "summary": route["summary"], "tags": [route["tag"]],
            "security": security,
            "responses": {str(code): r for code, r in sorted(responses.items())}}
        if route.get("parameters"):
            op["parameters"] = route["parameters"]
        if "body" in route:
            op["requestBody"] = route["body"]
        paths.setdefault(route["path"], {})[route["method"]] = op
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "wsops node admin API",
            "version": DOCUMENT_VERSION,
            "description": (
                "A node's admin listener (``--admin-port``): health, readiness, metrics, the "
                "node's figures, drain, leak profiling and the fleet page. ``/`` and "
                f"``/admin/*`` need ``Authorization: Bearer <{ADMIN_TOKEN_ENV}>`` when a token "
                "is set (GETs also take the page cookie), else callers on loopback only; "
                "``/healthz``, ``/readyz`` and ``/metrics`` are open. Each GET also answers "
                "HEAD. Past its connection cap the listener answers any request with a bare "
                "503. Built by ``wsops.admin.openapi`` from ``wsops.admin.contract``."),
        },
        "tags": [{"name": t} for t in sorted({r["tag"] for r in routes})],
        "paths": paths,
        "components": {
            "schemas": b.schemas,
            "responses": {"AtCapacity": _text(
                "The admin listener is at its connection cap (Retry-After: 1).")},
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": f"The admin token ({ADMIN_TOKEN_ENV})."},
                "pageCookie": {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME,
                               "description": "Set by ``GET /?token=...``; GET and HEAD "
                                              "only."},
            },
        },
    }


def render(document: dict[str, Any]) -> str:
    """``document`` as committed: sorted keys, two-space indent, a final newline."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


@functools.cache
def document_json() -> str:
    """What ``GET /admin/openapi.json`` serves (built once per process)."""
    return render(build_document())


if __name__ == "__main__":
    sys.stdout.write(document_json())
