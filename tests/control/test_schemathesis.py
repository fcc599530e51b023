"""schemathesis against a real `outpost server`'s own OpenAPI document, with an admin and a reader token.

No 5xx, and status codes, bodies, content types and headers as documented (CHECKS), with a bounded
number of examples per operation. The server is this module's alone: the admin run creates,
changes and deletes whatever it likes.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers.procs import Server

EXAMPLES = 4  # per operation and token
# No 5xx; status codes, bodies, content types and headers as documented. Not yet on: schemathesis's
# positive_data_acceptance (request models are looser in the spec than the routes' checks, e.g.
# a runbook `type` is a string there and one of python3/bash/pwsh in the route).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def st_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("schemathesis") / "server")
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    r = httpx.post(f"{server.url}/api/v1/tokens/st-reader", json={"role": "reader"},
                   headers={"Authorization": f"Bearer {server.token}"}, timeout=30)  # fmt: skip
    assert r.status_code == 201, r.text
    server.reader = r.json()["token"]  # type: ignore[attr-defined]
    yield server
    server.stop()


def _run_all(server: Server, token: str) -> int:
    """Every operation of the server's OpenAPI, EXAMPLES cases each, every check on: the failures, or raise."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)  # fmt: skip
        def check(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS, timeout=60)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # one operation's failure must not hide the others'
            failures.append(f"{operation.label}: {str(exc)[:800]}")
    assert not failures, "\n\n".join(failures)
    return operations


def test_the_api_answers_a_reader_as_its_openapi_says(st_server: Server) -> None:
    assert _run_all(st_server, st_server.reader) > 50  # type: ignore[attr-defined]


def test_the_api_answers_an_admin_as_its_openapi_says(st_server: Server) -> None:
    assert _run_all(st_server, st_server.token) > 50
