"""The pieces of the admin API's OpenAPI document (``wsops.admin.openapi``): JSON Schemas of the
contract's TypedDicts, and the response, parameter and body shapes every route uses."""

from __future__ import annotations

import types
from typing import (
    Any,
    Literal,
    NotRequired,
    Required,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

JSON = "application/json"
TEXT = "text/plain"
HTML = "text/html"


def ref(name: str, kind: str = "schemas") -> dict[str, Any]:
    return {"$ref": f"#/components/{kind}/{name}"}


class SchemaBuilder:
    """JSON Schemas of Python annotations; each TypedDict once, under ``schemas``."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}

    def of(self, tp: Any) -> dict[str, Any]:
        if tp is Any:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
        if tp in simple:
            return {"type": simple[tp]}
        if is_typeddict(tp):
            return self.typed_dict(tp)
        origin, args = get_origin(tp), get_args(tp)
        if origin is Literal:
            kinds = {simple[type(a)] for a in args}
            return {"enum": list(args), **({"type": kinds.pop()} if len(kinds) == 1 else {})}
        if origin in (Union, types.UnionType):
            parts = [self.of(a) for a in args]
            if all(p.keys() == {"type"} for p in parts):
                return {"type": [p["type"] for p in parts]}
            return {"anyOf": parts}
        if origin is list:
            return {"type": "array", "items": self.of(args[0])}
        if origin is dict and args[0] is str:
            values = self.of(args[1])
            return {"type": "object", **({"additionalProperties": values} if values else {})}
        if origin is tuple and Ellipsis not in args:
            return {"type": "array", "prefixItems": [self.of(a) for a in args],
                    "items": False, "minItems": len(args), "maxItems": len(args)}
        raise TypeError(f"no JSON schema for {tp!r}")

    def typed_dict(self, cls: Any) -> dict[str, Any]:
        """A ``$ref`` to ``cls``'s schema: a closed object, ``NotRequired`` fields optional."""
        name = cls.__name__
        if name not in self.schemas:
            self.schemas[name] = {}  # recursion guard; filled below
            properties: dict[str, Any] = {}
            required: list[str] = []
            for field, hint in get_type_hints(cls, include_extras=True).items():
                needed = bool(cls.__total__)
                if get_origin(hint) in (NotRequired, Required):
                    needed = get_origin(hint) is Required
                    hint = get_args(hint)[0]
                properties[field] = self.of(hint)
                if needed:
                    required.append(field)
            schema: dict[str, Any] = {"type": "object", "properties": properties,
                                      "required": sorted(required),
                                      "additionalProperties": False}
            if cls.__doc__:
                schema["description"] = " ".join(cls.__doc__.split())
            self.schemas[name] = schema
        return ref(name)


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def text_content(description: str, media: str = TEXT) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def int_range(lo: int, hi: int, default: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi, "default": default}


def bad_input(what: str) -> dict[str, Any]:
    return text_content(f"{what} out of range or malformed: the text names the field and its "
                        "range.")


def body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"required": False, "description": description,
            "content": {JSON: {"schema": schema}}}
