"""Stored values that could break every listing are refused, and listings survive old ones."""

from __future__ import annotations

import json
import sqlite3

import httpx

from tests.helpers.procs import Server


def _nested(levels: int) -> object:
    value: object = "leaf"
    for _ in range(levels):
        value = {"v": value}
    return value


def test_a_deeply_nested_variable_is_refused_with_a_reason(server: Server):
    with server.client() as c:
        deep = c.put("/api/v1/assets/variables/deep", json={"value": _nested(500)})
        assert deep.status_code == 400 and "nests 500 levels" in deep.json()["detail"]
        assert c.put("/api/v1/assets/variables/ok", json={"value": _nested(30)}).status_code == 200
        conn = c.put("/api/v1/assets/connections/api", json={"connection_type": "X", "fields": {"f": _nested(100)}})
        assert conn.status_code == 400 and "nest" in conn.json()["detail"]
        listing = c.get("/api/v1/assets/variables")
    assert listing.status_code == 200 and [v["name"] for v in listing.json()] == ["ok"]


def test_listings_survive_a_value_stored_before_the_cap(server: Server):
    with server.client() as c:
        assert c.put("/api/v1/assets/variables/old", json={"value": 1}).status_code == 200
    # As if an older version had stored it: write the deep value straight into the store.
    db = sqlite3.connect(server.data_dir / "control-plane.db", timeout=30)
    with db:
        db.execute(
            "UPDATE asset SET public_json = ? WHERE name = 'old'",
            (json.dumps({"type": "object", "value": _nested(600)}),),
        )
    db.close()
    with server.client() as c:
        listing = c.get("/api/v1/assets/variables")
        shown = c.get("/api/v1/assets/variables/old")
    assert listing.status_code == 200, listing.text
    assert shown.status_code == 200 and isinstance(shown.json()["value"], str)  # shown as its JSON text


def test_a_name_with_a_trailing_newline_is_not_a_second_name(server: Server):
    body = {"key": server.registration_key, "group": "linux\n", "name": "w1"}
    r = httpx.post(f"{server.url}/api/v1/agent/register", json=body, timeout=30)
    assert r.status_code == 400 and "invalid worker group name" in r.json()["detail"]
    with server.client() as c:
        draft = c.put("/api/v1/runbooks/hello%0A/draft", json={"type": "bash", "content": "true"})
        assert draft.status_code == 422 and "'hello\\n' is not valid" in draft.json()["detail"]
        assert c.put("/api/v1/assets/variables/region%0A", json={"value": 1}).status_code == 422


def test_parameters_too_big_to_exec_are_refused_up_front(server: Server):
    with server.client() as c:
        c.put("/api/v1/runbooks/echo/draft", json={"type": "bash", "content": 'echo "$#"'}).raise_for_status()
        c.post("/api/v1/runbooks/echo/publish").raise_for_status()
        params = [{"name": None, "value": "x" * 60_000} for _ in range(40)]  # 2.4 MB: more than exec takes
        r = c.post("/api/v1/jobs", json={"runbook": "echo", "run_on": "g1", "params": params})
    assert r.status_code == 400 and "variable asset" in r.json()["detail"], r.text
