"""The server API's OpenAPI 3.1 document (served at ``/api/openapi.json``; committed as
``docs/server-api-openapi.json``: ``python -m wsops.server.api.openapi > docs/...``)."""

from __future__ import annotations

import json
import sys
from typing import Any

from wsops.server.api.methods import (
    DEFAULT_ROOMS_LIMIT,
    DISCONNECT_CODE,
    MAX_BATCH,
    MAX_BROADCAST_ROOMS,
    MAX_ROOMS_LIMIT,
    METHODS,
    PATTERN_RE,
)
from wsops.server.core.protocol import DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT, ROOM_RE
from wsops.server.core.revocations import MAX_SECONDS as MAX_REVOKE_SECONDS
from wsops.tracecontext import MAX_TRACESTATE, TRACESTATE_RE
from wsops.version import __version__

ROOM: dict[str, Any] = {"type": "string", "pattern": f"^{ROOM_RE.pattern}$"}
ANY: dict[str, Any] = {"description": "Any JSON value."}
TRACEPARENT: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 128,
                               "description": "W3C trace context of the caller's span."}
TRACESTATE: dict[str, Any] = {"type": "string", "maxLength": MAX_TRACESTATE,
                              "pattern": f"^{TRACESTATE_RE.pattern}$",
                              "description": "W3C tracestate carried with the traceparent "
                                             "(ignored without one)."}
POSITION: dict[str, Any] = {"room": ROOM, "offset": {"type": "integer"},
                            "epoch": {"type": "string"}}


def _object(props: dict[str, Any], required: tuple[str, ...] = (),
            **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": False, **extra}


PUBLISHED = _object({**POSITION, "local": {"type": "boolean", "description": "Island mode: "
                                           "delivered here, stored in Redis once it is back."}},
                    ("room", "offset", "epoch"))
ERROR = _object({"error": _object({"code": {"type": "string"}, "message": {"type": "string"}},
                                  ("code", "message"))}, ("error",))
PARAMS: dict[str, dict[str, Any]] = {
    "publish": _object({"room": ROOM, "data": ANY, "traceparent": TRACEPARENT,
                        "tracestate": TRACESTATE},
                       ("room", "data")),
    "broadcast": _object({"rooms": {"type": "array", "items": ROOM, "minItems": 1,
                                    "maxItems": MAX_BROADCAST_ROOMS},
                          "data": ANY, "traceparent": TRACEPARENT,
                          "tracestate": TRACESTATE}, ("rooms", "data")),
    "presence": _object({"room": ROOM}, ("room",)),
    "presence_stats": _object({"room": ROOM}, ("room",)),
    "history": _object({"room": ROOM, "limit": {
        "type": "integer", "minimum": 1, "maximum": MAX_HISTORY_LIMIT,
        "default": DEFAULT_HISTORY_LIMIT}}, ("room",)),
    "rooms": _object({"pattern": {"type": "string", "pattern": f"^{PATTERN_RE.pattern}$",
                                  "description": "A glob: * ? [...]"},
                      "limit": {"type": "integer", "minimum": 1, "maximum": MAX_ROOMS_LIMIT,
                                "default": DEFAULT_ROOMS_LIMIT}}),
    "disconnect": _object({"user": {"type": "string", "minLength": 1, "maxLength": 256},
                           "connection": {"type": "integer", "minimum": 0},
                           "code": {"anyOf": [
                               {"enum": [1000, 1001, 1008, 1011, 1012, 1013]},
                               {"type": "integer", "minimum": 3000, "maximum": 4999}],
                               "default": DISCONNECT_CODE},
                           "reason": {"type": "string", "minLength": 1, "maxLength": 120}},
                          oneOf=[{"required": ["user"]}, {"required": ["connection"]}]),
    "unsubscribe": _object({"user": {"type": "string", "minLength": 1, "maxLength": 256},
                            "room": ROOM,
                            "reason": {"type": "string", "minLength": 1, "maxLength": 120}},
                           ("user", "room")),
    "revoke": _object({"user": {"type": "string", "minLength": 1, "maxLength": 256},
                       "jti": {"type": "string", "minLength": 1, "maxLength": 256},
                       "seconds": {"type": "number", "exclusiveMinimum": 0,
                                   "maximum": MAX_REVOKE_SECONDS,
                                   "description": "How long, from now."}},
                      ("seconds",), oneOf=[{"required": ["user"]}, {"required": ["jti"]}]),
    "info": _object({}),
}
PARAMS["batch"] = _object({"calls": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                                     "items": _object({"method": {"type": "string", "enum": [
                                         m for m in METHODS if m != "batch"]},
                                         "params": {"type": "object"}}, ("method",))}},
                          ("calls",))
RESULTS: dict[str, dict[str, Any]] = {
    "publish": PUBLISHED,
    "broadcast": _object({"results": {"type": "array", "items": {
        "anyOf": [PUBLISHED, _object({"room": ROOM, "error": ERROR["properties"]["error"]},
                                     ("room", "error"))]}}}, ("results",)),
    "presence": _object({"room": ROOM, "users": {"type": "array", "items": {"type": "string"}}},
                        ("room", "users")),
    "presence_stats": _object({"room": ROOM, "users": {"type": "integer", "minimum": 0}},
                              ("room", "users")),
    "history": _object({**POSITION, "messages": {"type": "array", "items": {"type": "object"}},
                        "truncated": {"type": "boolean"}}, ("room", "offset", "epoch",
                                                            "messages")),
    "rooms": _object({"scope": {"const": "node"}, "rooms": {"type": "array", "items": _object(
        {"room": ROOM, "connections": {"type": "integer", "minimum": 0}},
        ("room", "connections"))}, "truncated": {"type": "boolean"}},
        ("scope", "rooms", "truncated")),
    "disconnect": _object({"disconnected": {"type": "integer", "minimum": 0}},
                          ("disconnected",)),
    "unsubscribe": _object({"unsubscribed": {"type": "integer", "minimum": 0}},
                           ("unsubscribed",)),
    "revoke": _object({"kind": {"enum": ["user", "jti"]}, "value": {"type": "string"},
                       "until": {"type": "number"},
                       "disconnected": {"type": "integer", "minimum": 0}},
                      ("kind", "value", "until", "disconnected")),
    "info": _object({"nodes": {"type": "array", "items": {"type": "object"}}}, ("nodes",)),
    "batch": _object({"replies": {"type": "array", "items": {"anyOf": [
        _object({"result": {"type": "object"}}, ("result",)), ERROR]}}}, ("replies",)),
}
SUMMARY = {
    "publish": "Publish one message to a room (offsets and history as any publish).",
    "broadcast": "Publish one message to several rooms.",
    "presence": "Users present in a room (the fleet's, on a Redis broker).",
    "presence_stats": "How many users are present in a room.",
    "history": "The newest retained messages of a room, oldest first.",
    "rooms": "This node's rooms with their connections, busiest first.",
    "disconnect": "Close a user's connections on every node (the count is this node's), or "
                  "one connection of this node.",
    "unsubscribe": "Take a user's connections out of a room on every node; each is sent an "
                   "'unsubscribed' event (the count is this node's).",
    "revoke": "Refuse a user or a token (jti) on every node until a time; close its "
              "connections now (1008).",
    "info": "The fleet's live nodes (this node alone without a fleet broker).",
    "batch": "Several calls in one request, served in order, each answered.",
}


def _errors() -> dict[str, Any]:
    shown = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {str(code): {"description": text, **shown} for code, text in (
        (400, "Bad JSON or parameters (bad_json, bad_request, invalid_room)."),
        (401, "No key, an unknown key, or a bad, stale or replayed signature."),
        (404, "Unknown method (unknown_op)."),
        (413, "The body is over --api-max-body."),
        (429, "Over --api-rate calls/s for this key (Retry-After)."),
        (500, "Internal error."),
        (503, "The broker cannot serve the call now (unavailable)."))}


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    paths: dict[str, Any] = {}
    for method in METHODS:
        paths[f"/api/{method}"] = {"post": {
            "operationId": method, "summary": SUMMARY[method],
            "security": [{"apiKey": []}],
            "requestBody": {"required": bool(PARAMS[method]["required"]  # none: may be empty
                                             or "oneOf" in PARAMS[method]),
                            "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{method}_params"}}}},
            "responses": {"200": {"description": "Served.", "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{method}_result"}}}},
                **_errors()}}}
    paths["/api/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "This document.", "security": [],
        "responses": {"200": {"description": "The OpenAPI document.",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    schemas: dict[str, Any] = {"Error": ERROR}
    for method in METHODS:
        schemas[f"{method}_params"] = PARAMS[method]
        schemas[f"{method}_result"] = RESULTS[method]
    return {
        "openapi": "3.1.0",
        "info": {"title": "wsops server API", "version": __version__,
                 "description": "Publish, query rooms and disconnect users from a backend. "
                 "Authorization: Bearer KEY (WSOPS_API_KEYS); with --api-signatures also "
                 "X-Wsops-Timestamp and X-Wsops-Signature (README: 'Publishing from your "
                 "backend')."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer"}}},
    }


if __name__ == "__main__":
    json.dump(document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
