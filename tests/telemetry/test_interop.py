"""Stock clients against the collector: azure-kusto-data (Kusto REST) and the OpenTelemetry OTLP exporters."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from outpost import contract
from telemetry.collector import Collector
from tests.telemetry.server import ADMIN_TOKEN, serve


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path / "data")
    now = datetime.now(UTC)
    rows = [
        {
            "TimeGenerated": (now - timedelta(minutes=i)).isoformat(),
            "OSType": "Linux",
            "HeartbeatId": f"h{i}",
            "IsGatewayInstalled": False,
        }
        for i in range(5)
    ]
    c.ingest_heartbeats(rows, worker="w1", group="linux")
    yield c
    c.close()


def test_azure_kusto_data_client(collector: Collector) -> None:
    from azure.kusto.data import KustoClient, KustoConnectionStringBuilder
    from azure.kusto.data.exceptions import KustoApiError

    with serve(collector, anonymous=True) as url:
        client = KustoClient(KustoConnectionStringBuilder.with_no_authentication(url))
        resp = client.execute(
            "Outpost",
            "Heartbeat | summarize n = count(), last_seen = max(TimeGenerated), "
            "gw = any(IsGatewayInstalled) by Computer, WorkerGroup_s",
        )
        table = resp.primary_results[0]
        assert [c.column_name for c in table.columns] == ["Computer", "WorkerGroup_s", "n", "last_seen", "gw"]
        assert [c.column_type for c in table.columns] == ["string", "string", "long", "datetime", "bool"]
        (row,) = table.rows
        assert row["Computer"] == "w1" and row["n"] == 5 and row["gw"] is False
        assert isinstance(row["last_seen"], datetime) and row["last_seen"].tzinfo is not None
        assert abs((datetime.now(UTC) - row["last_seen"]).total_seconds()) < 120

        span = client.execute("Outpost", "print d = 90m, dyn = dynamic({'a': [1, 2]}), r = 1.5").primary_results[0]
        assert span.rows[0]["d"] == timedelta(minutes=90)
        assert span.rows[0]["dyn"] == {"a": [1, 2]}
        assert span.rows[0]["r"] == 1.5

        tables = client.execute_mgmt("Outpost", ".show tables").primary_results[0]
        assert {"Heartbeat", "AzureDiagnostics", "OTelSpans", "DiagnosticResults"} <= {r["TableName"] for r in tables}
        dbs = client.execute_mgmt("Outpost", ".show databases").primary_results[0]
        assert dbs.rows[0]["DatabaseName"] == "Outpost"
        version = client.execute_mgmt("Outpost", ".show version").primary_results[0]
        assert version.rows[0]["BuildVersion"]
        schema = client.execute_mgmt("Outpost", ".show databases schema as json").primary_results[0]
        doc = json.loads(schema.rows[0]["DatabaseSchema"])
        cols = {c["Name"]: c["CslType"] for c in doc["Databases"]["Outpost"]["Tables"]["Heartbeat"]["OrderedColumns"]}
        assert cols["TimeGenerated"] == "datetime" and cols["Computer"] == "string"

        with pytest.raises(KustoApiError) as err:
            client.execute("Outpost", "Heartbeat | summarize count() by Computer.")
        assert "syntax error at line 1" in str(err.value.get_api_error().message)

        # v1 query endpoint too (older clients, Grafana's v1 path)
        v1 = httpx.post(f"{url}/v1/rest/query", json={"db": "Outpost", "csl": "Heartbeat | count"}).json()
        assert v1["Tables"][0]["Rows"] == [[5]]
        assert v1["Tables"][0]["Columns"][0]["DataType"] == "Int64"
        client.close()


def test_kusto_with_admin_token_and_refusal_without(collector: Collector) -> None:
    from azure.kusto.data import KustoClient, KustoConnectionStringBuilder
    from azure.kusto.data.exceptions import KustoServiceError

    with serve(collector) as url:
        ok = KustoClient(KustoConnectionStringBuilder.with_token_provider(url, lambda: ADMIN_TOKEN))
        assert ok.execute("Outpost", "Heartbeat | count").primary_results[0].rows[0][0] == 5
        anon = KustoClient(KustoConnectionStringBuilder.with_no_authentication(url))
        with pytest.raises(KustoServiceError):
            anon.execute("Outpost", "Heartbeat | count")
        ok.close()
        anon.close()


def test_stock_otel_exporters(collector: Collector) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    headers = {"Authorization": "Bearer worker-token-w1"}
    with serve(collector) as url:
        resource = Resource.create({"service.name": "outpost-agent"})
        tp = TracerProvider(resource=resource)
        tp.add_span_processor(
            SimpleSpanProcessor(
                OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=headers, compression=Compression.Gzip)
            )
        )
        tracer = tp.get_tracer("outpost.test")
        with (
            tracer.start_as_current_span("job j1", attributes={"outpost.job_id": "j1"}) as parent,
            tracer.start_as_current_span("runbook process"),
        ):
            pass
        trace_id = format(parent.get_span_context().trace_id, "032x")
        tp.shutdown()

        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{url}/v1/metrics", headers=headers), export_interval_millis=60_000
        )
        mp = MeterProvider(resource=resource, metric_readers=[reader])
        counter = mp.get_meter("outpost.test").create_counter("outpost.agent.jobs", unit="1")
        counter.add(3, {"status": "Completed"})
        hist = mp.get_meter("outpost.test").create_histogram("outpost.agent.job.duration", unit="s")
        hist.record(2.5)
        mp.force_flush()
        mp.shutdown()

        spans = collector.query(
            f"OTelSpans | where TraceId == '{trace_id}' | project Name, ParentSpanId, ServiceName, Attributes"
            " | order by Name asc"
        )
        assert [r[0] for r in spans.rows] == ["job j1", "runbook process"]
        assert spans.rows[0][1] is None and spans.rows[1][1] is not None
        assert spans.rows[0][2] == "outpost-agent" and spans.rows[0][3] == {"outpost.job_id": "j1"}
        # force_flush and shutdown both export (cumulative): take the latest point per metric
        metrics = collector.query(
            "OTelMetrics | summarize arg_max(TimeGenerated, MetricType, Value, Count, Sum)"
            " by Name | project Name, MetricType, Value, Count, Sum | order by Name asc"
        )
        assert metrics.rows == [
            ["outpost.agent.job.duration", "histogram", None, 1, 2.5],
            ["outpost.agent.jobs", "sum", 3.0, None, None],
        ]

        # The OTLP/HTTP status codes
        with httpx.Client(base_url=url, headers=headers) as c:
            bad = c.post("/v1/traces", content=b"\xff\x00garbage", headers={"Content-Type": "application/x-protobuf"})
            assert bad.status_code == 400
            big = c.post(
                "/v1/traces",
                content=gzip.compress(b"\0" * (9 * 1024 * 1024)),
                headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
            )
            assert big.status_code == 413
            media = c.post("/v1/traces", content=b"{}", headers={"Content-Type": "text/plain"})
            assert media.status_code == 415
            now_ns = int(datetime.now(UTC).timestamp() * 1e9)
            body = {
                "resourceSpans": [
                    {
                        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-client"}}]},
                        "scopeSpans": [
                            {
                                "scope": {"name": "s"},
                                "spans": [
                                    {
                                        "traceId": "5b8efff798038103d269b633813fc60c",
                                        "spanId": "eee19b7ec3c1b174",
                                        "name": "ok",
                                        "kind": 2,
                                        "startTimeUnixNano": str(now_ns),
                                        "endTimeUnixNano": str(now_ns + 1000),
                                    },
                                    {
                                        "traceId": "",
                                        "spanId": "eee19b7ec3c1b175",
                                        "name": "no trace id",
                                        "startTimeUnixNano": str(now_ns),
                                    },
                                ],
                            }
                        ],
                    }
                ]
            }
            partial = c.post("/v1/traces", json=body)
            assert partial.status_code == 200
            assert partial.json()["partialSuccess"]["rejectedSpans"] == "1"
            unauth = httpx.post(f"{url}/v1/traces", content=b"", headers={"Content-Type": "application/x-protobuf"})
            assert unauth.status_code == 401
        got = collector.query("OTelSpans | where ServiceName == 'json-client' | project Name, Kind")
        assert got.rows == [["ok", "Server"]]


def test_agent_diagnostics_and_heartbeat_paths_are_the_contract() -> None:
    assert contract.AGENT_HEARTBEAT == "/api/v1/agent/heartbeat"
    assert contract.AGENT_DIAGNOSTICS == "/api/v1/agent/diagnostics"


def test_render_reaches_kusto_clients_as_the_visualization(collector: Collector) -> None:
    # Grafana's and Kusto Explorer's charts read the query's `render` from @ExtendedProperties.
    from azure.kusto.data import KustoClient, KustoConnectionStringBuilder

    query = "Heartbeat | summarize n = count() by bin(TimeGenerated, 1m) | render timechart with (title='beats')"
    with serve(collector, anonymous=True) as url:
        client = KustoClient(KustoConnectionStringBuilder.with_no_authentication(url))
        resp = client.execute("Outpost", query)
        assert sum(r["n"] for r in resp.primary_results[0]) == 5
        (props,) = [t for t in resp.tables if t.table_name == "@ExtendedProperties"]
        value = props.rows[0]["Value"]
        hint = json.loads(value) if isinstance(value, str) else value
        assert hint["Visualization"] == "timechart" and hint["Title"] == "beats" and hint["YColumns"] is None
        plain = client.execute("Outpost", "Heartbeat | count")
        (props,) = [t for t in plain.tables if t.table_name == "@ExtendedProperties"]
        value = props.rows[0]["Value"]
        assert (json.loads(value) if isinstance(value, str) else value)["Visualization"] is None
        client.close()
        answer = httpx.post(f"{url}/api/v1/query", json={"query": query}).json()
        assert answer["visualization"]["Visualization"] == "timechart"
