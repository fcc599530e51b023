"""OTLP/HTTP decoding: protobuf or JSON (optionally gzip) -> OTelSpans / OTelMetrics / OTelLogs rows.

Status codes follow the OTLP/HTTP spec: 400 for a body that cannot be decoded,
413 when it is too large (before or after decompression), 415 for another
content type, and 200 with `partial_success` when some items were rejected.
"""

from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from outpost.observer import WorkerIdentity

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

SPAN_KINDS = {0: "Unspecified", 1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}
STATUS_CODES = {0: "Unset", 1: "Ok", 2: "Error"}
_HEX_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}

REQUESTS: dict[str, tuple[type[Message], type[Message]]] = {
    "traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse),
    "metrics": (metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse),
    "logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
}


class OtlpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "deflate"):
        raise OtlpError(415, f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS if enc == "gzip" else zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise OtlpError(400, f"body is not valid {enc}: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise OtlpError(413, f"decompressed body exceeds {limit} bytes")
    return out


def _hex_to_b64(obj: Any) -> Any:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping wants base64."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in _HEX_KEYS and isinstance(v, str):
                try:
                    v = base64.b64encode(bytes.fromhex(v)).decode() if v else ""
                except ValueError:
                    raise OtlpError(400, f"{k} must be hex: {v[:40]!r}") from None
            else:
                v = _hex_to_b64(v)
            out[k] = v
        return out
    if isinstance(obj, list):
        return [_hex_to_b64(v) for v in obj]
    return obj


def decode(signal: str, body: bytes, content_type: str | None) -> tuple[Message, bool]:
    """Parse the request; returns (message, is_json)."""
    req_cls, _ = REQUESTS[signal]
    ctype = (content_type or PROTOBUF).split(";")[0].strip().lower()
    msg = req_cls()
    if ctype == PROTOBUF:
        try:
            msg.ParseFromString(body)
        except (DecodeError, ValueError) as exc:
            raise OtlpError(400, f"body is not a valid OTLP protobuf {req_cls.__name__}: {exc}") from None
        return msg, False
    if ctype == JSON:
        try:
            data = json.loads(body or b"{}")
            json_format.ParseDict(_hex_to_b64(data), msg, ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError) as exc:
            raise OtlpError(400, f"body is not valid OTLP JSON: {exc}") from None
        return msg, True
    raise OtlpError(415, f"unsupported Content-Type {content_type!r} (use {PROTOBUF} or {JSON})")


def encode_response(signal: str, rejected: int, message: str, as_json: bool) -> bytes:
    _, resp_cls = REQUESTS[signal]
    resp = resp_cls()
    if rejected:
        field = {"traces": "rejected_spans", "metrics": "rejected_data_points", "logs": "rejected_log_records"}[signal]
        setattr(resp.partial_success, field, rejected)
        resp.partial_success.error_message = message
    if as_json:
        return json.dumps(json_format.MessageToDict(resp)).encode()
    return resp.SerializeToString()


def any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def _time(nanos: int) -> datetime | None:
    if not nanos:
        return None
    return datetime.fromtimestamp(nanos / 1e9, UTC).replace(tzinfo=None)


# Service names only the server's own telemetry may carry (telemetry/tracing.py).
RESERVED_SERVICES = frozenset({"outpost-server", "outpost-collector"})


def _resource(resource: Any, worker: WorkerIdentity | None) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """(resource attributes, service name, identity columns) of one resource block.

    From a worker (*worker* given), the credential's identity is written over whatever the
    body claims (`outpost.worker.*`, `Computer`, `WorkerGroup_s`), and a reserved service
    name becomes `outpost-agent` (the claim kept in `outpost.claimed_service.name`).
    """
    res = attributes(resource.attributes)
    if worker is None:
        return res, res.get("service.name"), {}
    claimed = res.get("service.name")
    if isinstance(claimed, str) and claimed.strip().lower() in RESERVED_SERVICES:
        res["outpost.claimed_service.name"] = claimed
        res["service.name"] = "outpost-agent"
    res |= {
        "outpost.worker": worker.name,
        "outpost.worker.name": worker.name,
        "outpost.worker.group": worker.group,
        "outpost.worker.id": worker.worker_id,
    }
    return res, res.get("service.name"), {"Computer": worker.name, "WorkerGroup_s": worker.group}


def span_rows(msg: Any, worker: WorkerIdentity | None = None) -> tuple[list[dict[str, Any]], int, str]:
    rows, rejected, reason = [], 0, ""
    for rs in msg.resource_spans:
        res, service, ident = _resource(rs.resource, worker)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                valid_ids = len(sp.trace_id) == 16 and len(sp.span_id) == 8 and any(sp.trace_id)
                if not valid_ids or not sp.start_time_unix_nano:
                    rejected += 1
                    reason = "spans need a 16-byte trace_id, an 8-byte span_id and a start time"
                    continue
                start, end = sp.start_time_unix_nano, sp.end_time_unix_nano
                rows.append(
                    {
                        **ident,
                        "TimeGenerated": _time(start),
                        "EndTime": _time(end),
                        "DurationMs": (end - start) / 1e6 if end >= start else None,
                        "TraceId": sp.trace_id.hex(),
                        "SpanId": sp.span_id.hex(),
                        "ParentSpanId": sp.parent_span_id.hex() if sp.parent_span_id else None,
                        "Name": sp.name,
                        "Kind": SPAN_KINDS.get(sp.kind, str(sp.kind)),
                        "StatusCode": STATUS_CODES.get(sp.status.code, str(sp.status.code)),
                        "StatusMessage": sp.status.message or None,
                        "ServiceName": service,
                        "ScopeName": ss.scope.name or None,
                        "Attributes": attributes(sp.attributes),
                        "ResourceAttributes": res,
                        "Events": [
                            {"Name": e.name, "Time": _iso(e.time_unix_nano), "Attributes": attributes(e.attributes)}
                            for e in sp.events
                        ],
                        "Links": [
                            {
                                "TraceId": ln.trace_id.hex(),
                                "SpanId": ln.span_id.hex(),
                                "Attributes": attributes(ln.attributes),
                            }
                            for ln in sp.links
                        ],
                    }
                )
    return rows, rejected, reason


def _iso(nanos: int) -> str | None:
    t = _time(nanos)
    return t.isoformat() + "Z" if t else None


def metric_rows(msg: Any, worker: WorkerIdentity | None = None) -> tuple[list[dict[str, Any]], int, str]:
    rows, rejected, reason = [], 0, ""
    for rm in msg.resource_metrics:
        res, service, ident = _resource(rm.resource, worker)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                base = {
                    **ident,
                    "Name": m.name,
                    "Description": m.description or None,
                    "Unit": m.unit or None,
                    "MetricType": kind,
                    "ServiceName": service,
                    "ScopeName": sm.scope.name or None,
                    "ResourceAttributes": res,
                }
                if kind is None:
                    rejected += 1
                    reason = f"metric {m.name!r} has no data"
                    continue
                data = getattr(m, kind)
                temporality = getattr(data, "aggregation_temporality", 0)
                for p in data.data_points:
                    if not p.time_unix_nano:
                        rejected += 1
                        reason = "data points need time_unix_nano"
                        continue
                    row = {
                        **base,
                        "TimeGenerated": _time(p.time_unix_nano),
                        "Attributes": attributes(p.attributes),
                        "Temporality": {1: "delta", 2: "cumulative"}.get(temporality),
                    }
                    if kind in ("gauge", "sum"):
                        row["Value"] = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                        if kind == "sum":
                            row["IsMonotonic"] = data.is_monotonic
                    else:
                        row["Count"] = p.count
                        row["Sum"] = p.sum
                        if kind == "histogram":
                            row["BucketCounts"] = list(p.bucket_counts)
                            row["ExplicitBounds"] = list(p.explicit_bounds)
                            row["Min"] = p.min if p.HasField("min") else None
                            row["Max"] = p.max if p.HasField("max") else None
                    rows.append(row)
    return rows, rejected, reason


def log_rows(msg: Any, worker: WorkerIdentity | None = None) -> tuple[list[dict[str, Any]], int, str]:
    rows, rejected, reason = [], 0, ""
    for rl in msg.resource_logs:
        res, service, ident = _resource(rl.resource, worker)
        for sl in rl.scope_logs:
            for lr in sl.log_records:
                t = lr.time_unix_nano or lr.observed_time_unix_nano
                if not t:
                    rejected += 1
                    reason = "log records need time_unix_nano or observed_time_unix_nano"
                    continue
                body = any_value(lr.body) if lr.HasField("body") else None
                rows.append(
                    {
                        **ident,
                        "TimeGenerated": _time(t),
                        "ObservedTime": _time(lr.observed_time_unix_nano),
                        "SeverityNumber": lr.severity_number,
                        "SeverityText": lr.severity_text or None,
                        "Body": body if isinstance(body, str) or body is None else json.dumps(body),
                        "TraceId": lr.trace_id.hex() or None,
                        "SpanId": lr.span_id.hex() or None,
                        "Attributes": attributes(lr.attributes),
                        "ServiceName": service,
                        "ScopeName": sl.scope.name or None,
                        "ResourceAttributes": res,
                    }
                )
    return rows, rejected, reason


ROWS = {"traces": ("OTelSpans", span_rows), "metrics": ("OTelMetrics", metric_rows), "logs": ("OTelLogs", log_rows)}
