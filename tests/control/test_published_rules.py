"""What a request may hold is said once, in the request models: the API refuses anything else with
422 and a message naming the field and the rule, and its OpenAPI document shows the same rule."""

from __future__ import annotations

import httpx

from tests.helpers.procs import Server


def _detail(r: httpx.Response) -> str:
    return r.json()["detail"]


def test_a_runbook_of_an_unknown_type_is_refused_naming_the_types(server: Server) -> None:
    with server.client() as c:
        r = c.put("/api/v1/runbooks/hello/draft", json={"type": "cobol", "content": "DISPLAY 'x'"})
        assert r.status_code == 422, r.text
        assert _detail(r) == "invalid request: type: Input should be 'python3', 'bash' or 'pwsh'"
        assert c.get("/api/v1/runbooks/hello").status_code == 404  # nothing was saved


def test_a_name_with_a_trailing_newline_is_refused_with_the_rule(server: Server) -> None:
    with server.client() as c:
        r = c.put("/api/v1/runbooks/hello%0A/draft", json={"type": "bash", "content": "true"})
        assert r.status_code == 422, r.text
        assert "'hello\\n' is not valid: use 1-128 letters, digits, '.', '_' or '-'" in _detail(r)
        r = c.post("/api/v1/schedules/nightly", json={"runbook": "hello\n", "run_on": "linux", "frequency": "Day"})
        assert r.status_code == 422 and "runbook: 'hello\\n' is not valid" in _detail(r), r.text
        assert c.get("/api/v1/runbooks").json() == []


def test_json_types_are_not_coerced(server: Server) -> None:
    with server.client() as c:
        r = c.put("/api/v1/runbooks/hello/limits", json={"max_processes": True})
        assert r.status_code == 422 and "max_processes" in _detail(r), r.text
        body = {"type": "bash", "content": "true", "retry_on_worker_loss": "yes"}
        r = c.put("/api/v1/runbooks/hello/draft", json=body)
        assert r.status_code == 422 and "retry_on_worker_loss: Input should be a valid boolean" in _detail(r), r.text


def test_an_unsupported_method_names_every_method_of_the_path(server: Server) -> None:
    r = httpx.patch(f"{server.url}/api/v1/runbooks/hello", headers={"Authorization": f"Bearer {server.token}"})
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) >= {"GET", "DELETE"}


def test_the_openapi_document_shows_the_rules(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["RunbookType"]["enum"] == ["python3", "bash", "pwsh"]
    assert schemas["DraftBody"]["properties"]["type"] == {"$ref": "#/components/schemas/RunbookType"}
    draft = spec["paths"]["/api/v1/runbooks/{name}/draft"]["put"]
    (name,) = [p for p in draft["parameters"] if p["name"] == "name"]
    assert name["schema"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"  # `$`: the end, in JSON Schema
    job = spec["paths"]["/api/v1/jobs/{job_id}"]["get"]
    assert job["parameters"][0]["schema"]["pattern"].startswith("^[0-9A-Fa-f]{8}-")
    assert schemas["ScheduleBody"]["properties"]["frequency"]["enum"] == ["OneTime", "Minute", "Hour", "Day", "Week"]
    assert schemas["JobLimits"]["properties"]["memory_mb"]["anyOf"][0] == {
        "type": "integer", "minimum": 8, "maximum": 16 * 1024 * 1024,
    }  # fmt: skip
    assert "422" in draft["responses"] and "detail" in schemas["Error"]["properties"]
