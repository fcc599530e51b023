"""The server's own spans go straight into the collector's OTelSpans table.

Same encoding path as spans arriving over OTLP/HTTP (encode to the OTLP protobuf,
then `otlp.span_rows`), so server and agent spans of one job share one table shape.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from outpost import __version__
from telemetry import otlp
from telemetry.collector import Collector

log = logging.getLogger(__name__)


class CollectorSpanExporter(SpanExporter):
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows, _, _ = otlp.span_rows(encode_spans(spans))
        try:
            self.collector.ingest_rows("OTelSpans", rows)
        except Exception:  # a closed store during shutdown must not crash the exporter thread
            log.warning("could not store %d server spans", len(rows), exc_info=True)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def server_tracer_provider(collector: Collector) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "outpost-server", "service.version": __version__})
    )
    provider.add_span_processor(BatchSpanProcessor(CollectorSpanExporter(collector), schedule_delay_millis=500))
    return provider
