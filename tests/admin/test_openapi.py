"""Issue #16: the admin API's OpenAPI document (``wsops.admin.openapi``) is committed
(``docs/admin-openapi.json``), lists every route of a live node's admin listener and no other,
and a live node answers as it says: schemathesis sends generated requests, valid and invalid,
and checks every status is documented, every content type too, every JSON body matches its
schema, valid input is accepted, invalid input refused, and nothing answers 5xx.

The generated requests go through schemathesis's blocking client in a worker thread while the
node serves on the test's event loop. Each operation gets a node of its own: the drain that
``POST /admin/drain`` starts and the profiling sessions of ``/admin/profile/start`` stay on it.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from pathlib import Path
from typing import Any, is_typeddict

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

from tests.conftest import LiveServer, ServerFactory
from wsops.admin import contract, openapi
from wsops.admin.access import ADMIN_TOKEN_ENV
from wsops.admin.listener import ADMIN_KEY
from wsops.admin.profiling import MAX_SESSIONS

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "admin-openapi.json"
DOCUMENT = openapi.build_document()
OPERATIONS = sorted((path, method.upper()) for path, item in DOCUMENT["paths"].items()
                    for method in item)
EXAMPLES = 25
"""Generated requests per operation and mode (Hypothesis stops sooner when it has tried every
input, as for an operation without parameters)."""
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
Mode = schemathesis.GenerationMode


def takes_input(path: str, method: str) -> bool:
    op = DOCUMENT["paths"][path][method.lower()]
    return bool(op.get("parameters") or op.get("requestBody"))


STREAMS = {("/admin/tap", "GET")}
"""Operations that answer with a stream lasting up to an hour: not fuzzed (a generated valid
request would hold it open); tests/server/test_tap.py drives them and their refusals."""
FUZZED = [(path, method, mode) for path, method in OPERATIONS for mode in Mode
          if (path, method) not in STREAMS and (mode.is_positive or takes_input(path, method))]


def load(base_url: str) -> Any:
    """The document as the node serves it, loaded by schemathesis (blocking)."""
    return schemathesis.openapi.from_url(base_url + "/admin/openapi.json")


def test_the_committed_document_is_what_the_code_builds_and_valid_openapi() -> None:
    assert COMMITTED.read_text() == openapi.render(openapi.build_document()), (
        "stale: run `python -m wsops.admin.openapi > docs/admin-openapi.json`")
    assert openapi.document_json() == COMMITTED.read_text()
    schemathesis.openapi.from_dict(DOCUMENT).validate()  # the OpenAPI 3.1 meta-schema



def test_every_contract_document_is_a_component() -> None:
    typed = {name for name, obj in vars(contract).items() if is_typeddict(obj)}
    assert typed == set(DOCUMENT["components"]["schemas"])


async def test_every_route_of_a_live_node_is_in_the_document_and_no_other(
    server: LiveServer,
) -> None:
    listener = server.app[ADMIN_KEY]
    served = {(r.resource.canonical, r.method) for r in listener.app.router.routes()
              if r.resource is not None}
    gets = {path for path, method in served if method == "GET"}
    assert {(path, "HEAD") for path in gets} <= served  # aiohttp's, for each GET: not listed
    assert {op for op in served if op[1] != "HEAD"} == set(OPERATIONS)
    async with aiohttp.ClientSession() as s, s.get(listener.url + "/admin/openapi.json") as r:
        assert r.status == 200 and r.content_type == "application/json"
        assert await r.json() == json.loads(COMMITTED.read_text())


def fuzz(base_url: str, path: str, method: str, mode: Mode) -> int:
    """Generated requests to one operation, each response checked against the document;
    returns how many were sent (blocking: run it in a thread)."""
    operation = load(base_url)[path][method]
    checks = [*CONFORMANCE, positive_data_acceptance if mode.is_positive
              else negative_data_rejection]
    if path != "/readyz":  # whose 503 (not ready) is documented; a fresh node is ready
        checks.append(not_a_server_error)
    sent = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(session=session, checks=checks, timeout=10)

    with requests.Session() as session:
        run()
    return sent


@pytest.mark.parametrize(("path", "method", "mode"), FUZZED)
async def test_a_live_node_answers_as_the_document_says(
    server_factory: ServerFactory, path: str, method: str, mode: Mode,
) -> None:
    server = await server_factory()
    assert await asyncio.to_thread(fuzz, server.admin_url, path, method, mode) > 0
    if path == "/admin/profile/start":  # every session ended: tracemalloc off again
        async with aiohttp.ClientSession() as s, s.post(
                server.admin_url + "/admin/profile/stop", json={}) as r:
            assert r.status == 200 and (await r.json())["sessions"] == 0
        assert not tracemalloc.is_tracing()


def ranged_inputs() -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(path, method, "query" or "body", name, schema) of every input with a documented range."""
    out = []
    for path, method in OPERATIONS:
        op = DOCUMENT["paths"][path][method.lower()]
        for p in op.get("parameters", ()):
            if "minimum" in p["schema"]:
                out.append((path, method, p["in"], p["name"], p["schema"]))
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        for name, schema in body.get("schema", {}).get("properties", {}).items():
            if "minimum" in schema:
                out.append((path, method, "body", name, schema))
    return out


REQUIRED_BODY = {"/admin/debug": {"user": "range-test"}}
"""What a body must have besides the ranged field."""
REQUIRED_QUERY = {"/admin/tap": {"room": "range-test", "seconds": "1"}}
"""What a query must have besides the ranged parameter."""


async def test_every_documented_range_is_the_handlers_at_both_ends(
    server_factory: ServerFactory,
) -> None:
    """The fuzzing finds a range documented wider than the handler's; this finds one documented
    narrower too: each bound is accepted, one step past it refused."""
    url = (await server_factory()).admin_url
    inputs = ranged_inputs()
    assert {(path, name) for path, _, _, name, _ in inputs} >= {
        ("/admin/connections", "top"), ("/admin/drain", "batch"), ("/admin/drain", "deadline"),
        ("/admin/profile/sample", "types"), ("/admin/profile/start", "frames"),
        ("/admin/debug", "seconds"), ("/admin/tap", "rate"), ("/admin/tap", "seconds")}
    async with aiohttp.ClientSession() as s:
        for path, method, where, name, schema in inputs:
            step = 1 if schema["type"] == "integer" else 1e-6
            lo, hi = schema["minimum"], schema["maximum"]
            for value, ok in ((lo, True), (hi, True), (lo - step, False), (hi + step, False)):
                kw: dict[str, Any] = ({"params": {**REQUIRED_QUERY.get(path, {}),
                                                  name: str(value)}} if where == "query"
                                      else {"json": {**REQUIRED_BODY.get(path, {}),
                                                     name: value}})
                async with s.request(method, url + path, **kw) as r:
                    assert (r.status < 300) == ok and (ok or r.status == 400), (
                        path, name, value, r.status, await r.text())
                if path == "/admin/profile/start":
                    async with s.post(url + "/admin/profile/stop", json={}):
                        pass
    assert not tracemalloc.is_tracing()


def call(base_url: str, path: str, method: str, *, expect: int, **case: Any) -> Any:
    """One given request, its response checked against the document (blocking)."""
    operation = schemathesis.openapi.from_dict(DOCUMENT)[path][method]
    response = operation.Case(**case).call_and_validate(
        base_url=base_url, checks=[*CONFORMANCE, not_a_server_error], timeout=30)
    assert response.status_code == expect, (path, method, case, response.text)
    media = response.headers.get("content-type", [""])[0]
    return response.json() if media.startswith("application/json") else response.text


async def test_a_drain_takes_integral_numbers_only(server_factory: ServerFactory) -> None:
    """The document says integer: 1.5 used to be taken as 1 (and close code 3000.5 as 3000)."""
    url = (await server_factory()).admin_url
    for body in ({"batch": 1.5}, {"code": 3000.5}):
        text = await asyncio.to_thread(call, url, "/admin/drain", "POST", expect=400, body=body)
        assert text == f"'{next(iter(body))}' must be an integer\n"
    text = await asyncio.to_thread(call, url, "/admin/drain", "POST", expect=400,
                                   body={"spread": 61})
    assert "spread" in text
    started = await asyncio.to_thread(call, url, "/admin/drain", "POST", expect=202,
                                      body={"batch": 2.0, "code": 3000.0, "deadline": 5,
                                            "spread": 2})
    assert started["options"] == {"batch": 2, "code": 3000, "deadline": 5.0, "interval": 0.5,
                                  "spread": 2.0}


async def test_profiling_with_tracing_on_and_past_the_session_cap(
    server_factory: ServerFactory,
) -> None:
    """What the fuzzing cannot reach cheaply: samples with traced sites (tracing slows the
    whole test process), and the 409 of one session too many."""
    url = (await server_factory()).admin_url

    def profile() -> None:
        sessions = [call(url, "/admin/profile/start", "POST", expect=200,
                         body={"frames": 2, "lease_seconds": 60})["session"]
                    for _ in range(MAX_SESSIONS)]
        call(url, "/admin/profile/start", "POST", expect=409, body={})
        for group in ("lineno", "traceback"):
            sample = call(url, "/admin/profile/sample", "GET", expect=200,
                          query={"group": group, "top": 3, "types": 3, "session": sessions[0]})
            assert sample["tracing"] and sample["sites"], group
        stopped = call(url, "/admin/profile/stop", "POST", expect=200, body={"session": None})
        assert stopped["stopped"] and not stopped["tracing"]

    try:
        await asyncio.to_thread(profile)
    finally:
        async with aiohttp.ClientSession() as s, s.post(url + "/admin/profile/stop", json={}):
            pass
    assert not tracemalloc.is_tracing()


async def test_with_a_token_every_guarded_operation_refuses_a_caller_without_it_as_documented(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "t0ken")
    url = (await server_factory()).admin_url

    def refused() -> None:
        for path, method in OPERATIONS:
            op = DOCUMENT["paths"][path][method.lower()]
            if not op["security"]:  # open: /healthz, /readyz, /metrics
                continue
            params = {"path_parameters": {"name": "index.html"}} if "{" in path else {}
            call(url, path, method, expect=401, **params)

    await asyncio.to_thread(refused)
