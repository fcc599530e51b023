"""Admin-API shortcuts for tests (the CLI is tested separately, through real subprocesses)."""

from __future__ import annotations

import httpx

from tests.helpers.procs import wait_until

FINAL = ("Completed", "Failed", "Stopped", "Suspended")


def publish(client: httpx.Client, name: str, content: str, rb_type: str = "bash", **extra: object) -> None:
    r = client.put(f"/api/v1/runbooks/{name}/draft", json={"type": rb_type, "content": content, **extra})
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/runbooks/{name}/publish")
    assert r.status_code == 200, r.text


def start_job(
    client: httpx.Client, runbook: str, group: str = "g1", params: list[dict] | None = None, **extra: object
) -> str:
    r = client.post("/api/v1/jobs", json={"runbook": runbook, "run_on": group, "params": params or [], **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def wait_job(client: httpx.Client, job_id: str, statuses: tuple[str, ...] = FINAL, timeout: float = 60) -> dict:
    def done() -> dict | None:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["status"] in statuses else None

    return wait_until(done, timeout, 0.1, f"job {job_id} to reach {statuses}")


def outputs(client: httpx.Client, job_id: str, stream: str | None = None) -> list[str]:
    params: dict[str, object] = {"limit": 10000}
    if stream:
        params["stream"] = stream
    records, after = [], -1
    while True:
        page = client.get(f"/api/v1/jobs/{job_id}/streams", params={**params, "after": after}).json()["records"]
        if not page:
            return [r["text"] for r in records]
        records.extend(page)
        after = page[-1]["seq"]
