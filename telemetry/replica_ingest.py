"""The collector's door for replicas: `POST /api/v1/telemetry/forward` (see telemetry/forwarding.py).

A replica is not a worker: it authenticates with the collector's `--replica-token`
(or its `--admin-token`). Body::

    {"replica": "<spool id>", "records": [{"seq": 1, "record": {"kind": "heartbeat", ...}}, ...]}

Answer: {"watermark": N, "applied": n, "duplicates": d, "rejected": [{"seq", "error"}]}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from telemetry.api import _body
from telemetry.collector import Collector
from telemetry.forwarding import FORWARD

# A record can carry a whole OTLP batch (8 MiB) as rows; a request carries several records.
MAX_FORWARD_BYTES = 64 * 1024 * 1024
MAX_RECORDS = 10_000


def build_replica_ingest_router(collector: Collector, require_replica: Callable[..., Any]) -> APIRouter:
    router = APIRouter()

    @router.post(FORWARD, dependencies=[Depends(require_replica)], tags=["replicas"])
    async def forward(request: Request) -> dict[str, Any]:
        raw = await _body(request, MAX_FORWARD_BYTES)
        try:
            body = orjson.loads(raw or b"null")
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, f"body is not valid JSON: {exc}") from None
        usage = 'body must be {"replica": "<id>", "records": [{"seq": <int>, "record": {"kind": ...}}]}'
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise HTTPException(400, usage)
        replica = body.get("replica")
        if not isinstance(replica, str) or not 0 < len(replica) <= 64:
            raise HTTPException(400, "replica must be a string of 1 to 64 characters")
        if len(body["records"]) > MAX_RECORDS:
            raise HTTPException(413, f"more than {MAX_RECORDS} records in one request")
        records = []
        for i, item in enumerate(body["records"]):
            seq = item.get("seq") if isinstance(item, dict) else None
            if type(seq) is not int or seq <= 0 or not isinstance(item.get("record"), dict):
                raise HTTPException(400, f"records[{i}]: {usage}")
            records.append({**item["record"], "seq": seq})
        return await run_in_threadpool(collector.apply_forwarded, replica, records)

    return router
