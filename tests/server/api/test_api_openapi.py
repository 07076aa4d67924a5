"""The server API's OpenAPI document: committed (``docs/server-api-openapi.json``), every route
of a live API listener and no other, and a live node answering as it says: schemathesis sends
generated requests, valid and invalid, with a key, and checks statuses, content types and
bodies against the document, valid input accepted, invalid refused, nothing answered 5xx."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ServerFactory
from wsops.server.api.openapi import document

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "docs" / "server-api-openapi.json"
KEY = "f" * 32
DOCUMENT = document()
OPERATIONS = sorted((path, method.upper()) for path, item in DOCUMENT["paths"].items()
                    for method in item)
Mode = schemathesis.GenerationMode
FUZZED = [(path, method, mode) for path, method in OPERATIONS for mode in Mode
          if mode.is_positive or method == "POST"]
EXAMPLES = 25
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance,
          not_a_server_error]


def test_the_committed_document_is_what_the_code_builds_and_valid_openapi() -> None:
    assert json.loads(COMMITTED.read_text()) == DOCUMENT, (
        "stale: run `python -m wsops.server.api.openapi > docs/server-api-openapi.json`")
    schemathesis.openapi.from_dict(DOCUMENT).validate()  # the OpenAPI 3.1 meta-schema


async def test_every_route_of_the_listener_is_in_the_document_and_no_other(
        monkeypatch: pytest.MonkeyPatch, server_factory: ServerFactory) -> None:
    monkeypatch.setenv("WSOPS_API_KEYS", KEY)
    server = await server_factory(api_port=0)
    listener = server.node.api
    assert listener is not None
    served = {(r.resource.canonical, r.method) for r in listener.app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    templated = {("/api/{method}", "POST"), ("/api/openapi.json", "GET")}
    assert served == templated
    assert {op for op in OPERATIONS if op[1] == "POST"} == {
        (f"/api/{m}", "POST") for m in DOCUMENT["components"]["schemas"]
        if m.endswith("_params") for m in [m.removesuffix("_params")]}
    async with aiohttp.ClientSession() as s, s.get(listener.url + "/api/openapi.json") as r:
        assert r.status == 200 and await r.json() == DOCUMENT


def fuzz(base_url: str, path: str, method: str, mode: Mode) -> int:
    operation = schemathesis.openapi.from_dict(DOCUMENT)[path][method]
    checks: list[Any] = [*CHECKS, positive_data_acceptance if mode.is_positive
                         else negative_data_rejection]
    sent = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(base_url=base_url, session=session, checks=checks, timeout=10)

    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {KEY}"
        run()
    return sent


@pytest.mark.parametrize(("path", "method", "mode"), FUZZED)
async def test_a_live_node_answers_as_the_document_says(
        monkeypatch: pytest.MonkeyPatch, server_factory: ServerFactory, path: str, method: str,
        mode: Mode) -> None:
    monkeypatch.setenv("WSOPS_API_KEYS", KEY)
    server = await server_factory(api_port=0)
    assert server.node.api is not None
    assert await asyncio.to_thread(fuzz, server.node.api.url, path, method, mode) > 0
