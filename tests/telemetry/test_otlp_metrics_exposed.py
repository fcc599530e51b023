"""OTLP metrics sent by the stock OpenTelemetry exporter to a real `outpost server` show up on /metrics."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from outpost.state import CREDENTIAL_FILE
from telemetry.otlp_prom import OtlpMetricsCollector, prom_name
from tests.helpers.procs import Agent, Server


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample *name* whose labels include *labels* (None when absent)."""
    for line in text.splitlines():
        m = re.match(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not m:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    return None


def test_stock_exporter_metrics_on_prometheus_endpoint(make_server: Callable[..., Server], tmp_path) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    server = make_server()
    agent = Agent(server, tmp_path / "state-w1", "linux", "w1")
    agent.register()  # a worker credential, as every OTLP sender to Outpost has
    credential = (agent.state_dir / CREDENTIAL_FILE).read_text().strip()

    exporter = OTLPMetricExporter(
        endpoint=f"{server.url}/v1/metrics",
        headers={"Authorization": f"Bearer {credential}"},
        compression=Compression.Gzip,
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    mp = MeterProvider(resource=Resource.create({"service.name": "billing-batch"}), metric_readers=[reader])
    try:
        meter = mp.get_meter("test.meter")
        jobs = meter.create_counter("outpost.test.jobs", unit="{job}", description="Jobs done")
        jobs.add(3, {"status": "Completed", "runbook.name": "nightly"})
        jobs.add(1, {"status": "Failed", "runbook.name": "nightly"})
        meter.create_up_down_counter("queue.items").add(7)
        meter.create_observable_gauge(
            "disk.free", unit="By", callbacks=[lambda _options: [_obs(123456789.0, {"mount": "/"})]]
        )
        hist = meter.create_histogram("outpost.test.duration", unit="s", description="How long")
        for v in (0.3, 2.0, 40.0):
            hist.record(v, {"runbook.name": "nightly"})
        assert mp.force_flush(10_000)

        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        base = {"service": "billing-batch", "worker": "w1"}
        assert "# TYPE outpost_test_jobs_total counter" in text or "# TYPE outpost_test_jobs counter" in text
        assert sample(text, "outpost_test_jobs_total", status="Completed", runbook_name="nightly", **base) == 3.0
        assert sample(text, "outpost_test_jobs_total", status="Failed", **base) == 1.0
        assert sample(text, "queue_items", **base) == 7.0  # a non-monotonic sum is a gauge
        assert sample(text, "disk_free_bytes", mount="/", **base) == 123456789.0
        assert sample(text, "outpost_test_duration_seconds_count", runbook_name="nightly", **base) == 3.0
        assert sample(text, "outpost_test_duration_seconds_sum", **base) == 42.3
        assert sample(text, "outpost_test_duration_seconds_bucket", le="+Inf", **base) == 3.0
        # the SDK's default bounds (0, 5, 10, 25, 50, ...), cumulative as Prometheus has them
        assert sample(text, "outpost_test_duration_seconds_bucket", le="0.0", **base) == 0.0
        assert sample(text, "outpost_test_duration_seconds_bucket", le="5.0", **base) == 2.0
        assert sample(text, "outpost_test_duration_seconds_bucket", le="50.0", **base) == 3.0

        # The whole exposition still parses (one family per name, every sample's labels complete).
        families = {f.name for f in text_string_to_metric_families(text)}
        assert {"outpost_test_jobs", "outpost_test_duration_seconds", "outpost_worker_up"} <= families

        # The next export (cumulative) replaces the values, not adds to them.
        jobs.add(2, {"status": "Completed", "runbook.name": "nightly"})
        assert mp.force_flush(10_000)
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert sample(text, "outpost_test_jobs_total", status="Completed", **base) == 5.0

    finally:
        mp.shutdown()

    # Still queryable as rows, as before.
    with server.client() as c:
        r = c.post("/api/v1/query", json={"query": "OTelMetrics | where Name == 'outpost.test.jobs' | count"})
        assert r.status_code == 200 and r.json()["rows"][0][0] >= 2


def _obs(value: float, attrs: dict):  # noqa: ANN202
    from opentelemetry.metrics import Observation

    return Observation(value, attrs)


def _row(
    name: str,
    value: float,
    *,
    t: datetime,
    kind: str = "sum",
    monotonic: bool = True,
    temporality: str = "cumulative",
    **attrs: str,
) -> dict:
    return {
        "Name": name,
        "MetricType": kind,
        "IsMonotonic": monotonic,
        "Temporality": temporality,
        "Value": value,
        "ServiceName": "svc",
        "Attributes": attrs,
        "TimeGenerated": t,
        "Unit": None,
    }


def test_bounded_expiring_and_deltas() -> None:
    now = [1000.0]
    c = OtlpMetricsCollector(reserved={"outpost_jobs"}, max_series=3, expire_after_s=900, clock=lambda: now[0])
    t = datetime.now(UTC)
    c.update([_row("a", 1, t=t, k="1"), _row("a", 1, t=t, k="2"), _row("b", 5, t=t, kind="gauge")], worker="w")
    c.update([_row("a", 1, t=t, k="3")], worker="w")  # over the limit: dropped, counted
    c.update([_row("outpost.jobs", 9, t=t)], worker="w")  # Outpost's own name: never shadowed
    assert c.series_count() == 3
    names = {m.name: m for m in c.collect()}
    assert "outpost_jobs" not in names and names["outpost_otlp_metric_series_dropped"].samples[0].value == 1
    now[0] += 1000  # not updated for 15 minutes: gone, and their room is free again
    assert c.series_count() == 0
    # deltas add up; an older cumulative point never replaces a newer one
    c.update([_row("d", 2, t=t, temporality="delta")])
    c.update([_row("d", 3, t=t + timedelta(seconds=1), temporality="delta")])
    c.update([_row("b", 9, t=t - timedelta(minutes=1), kind="gauge")])
    got = {(m.name, s.name): s.value for m in c.collect() for s in m.samples}
    assert got[("d", "d_total")] == 5.0
    assert got[("b", "b")] == 9.0  # expired, so this is a new series
    assert ("a", "a_total") not in got
    c.update([_row("b", 4, t=t - timedelta(minutes=2), kind="gauge")])
    assert {s.value for m in c.collect() if m.name == "b" for s in m.samples} == {9.0}


def test_names() -> None:
    assert prom_name("outpost.agent.jobs", "{job}", "counter") == "outpost_agent_jobs"
    assert prom_name("http.server.request.duration", "s", "histogram") == "http_server_request_duration_seconds"
    assert prom_name("process.memory", "By", "gauge") == "process_memory_bytes"
    assert prom_name("cpu.utilization", "1", "gauge") == "cpu_utilization_ratio"
    assert prom_name("requests_total", None, "counter") == "requests"
    assert prom_name("net.io", "By/s", "gauge") == "net_io_bytes_per_second"
