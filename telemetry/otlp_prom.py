"""OTLP metrics received at /v1/metrics, re-exposed on /metrics with Prometheus names.

The latest point of each received gauge, sum and (explicit-bucket) histogram
series becomes a Prometheus sample, named as the OpenTelemetry → Prometheus
compatibility rules have it:

- dots and other characters Prometheus does not allow become `_`
  (`outpost.agent.job.duration` → `outpost_agent_job_duration`);
- the unit becomes a suffix (`s` → `_seconds`, `By` → `_bytes`, `ms` →
  `_milliseconds`, `{job}` annotations are dropped, `1` on a gauge → `_ratio`);
- monotonic sums are counters (`_total`), non-monotonic sums gauges;
  cumulative points are taken as sent, delta points are added up;
- labels: `service` (resource `service.name`), `worker` (the worker credential
  that sent it, so two workers' series never overwrite each other), then the
  data point's attributes (a clash with those two gets the `exported_` prefix).

Bounded: a series not updated for `expire_after_s` (15 minutes) disappears, new
series beyond `max_series` (10,000) are dropped and counted in
`outpost_otlp_metric_series_dropped_total`; names that would collide with
Outpost's own metrics are skipped. Exponential histograms and summaries are
stored (OTelMetrics) but not re-exposed.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector as _PromCollector
from prometheus_client.utils import floatToGoString

EXPIRE_AFTER_S = 15 * 60.0
MAX_SERIES = 10_000

_UNITS = {
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "min": "minutes",
    "h": "hours",
    "d": "days",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "%": "percent",
}
_PER = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}
_BAD = re.compile(r"[^a-zA-Z0-9_:]")
_BAD_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def prom_name(name: str, unit: str | None, kind: str) -> str:
    """The Prometheus metric name for an OTLP metric (without `_total`; counters get it on exposition)."""
    base = _BAD.sub("_", name)
    base = re.sub(r"__+", "_", base).strip("_") or "metric"
    if base[0].isdigit():
        base = "_" + base
    suffix = _unit_suffix(unit or "", kind)
    if suffix and not base.endswith("_" + suffix):
        base = f"{base}_{suffix}"
    if kind == "counter" and base.endswith("_total"):
        base = base[: -len("_total")]
    return base


def _unit_suffix(unit: str, kind: str) -> str:
    unit = re.sub(r"\{[^}]*\}", "", unit).strip()
    if not unit:
        return ""
    if unit == "1":
        return "ratio" if kind == "gauge" else ""
    if "/" in unit:
        num, _, den = unit.partition("/")
        num_s = _UNITS.get(num, num) if num and num != "1" else ""
        den_s = _PER.get(den, _UNITS.get(den, den))
        text = f"{num_s}_per_{den_s}" if num_s else f"per_{den_s}"
    else:
        text = _UNITS.get(unit, unit)
    return _BAD_LABEL.sub("_", text).strip("_")


def label_name(key: str) -> str:
    out = _BAD_LABEL.sub("_", key)
    if not out or out[0].isdigit():
        out = "_" + out
    if out.startswith("__"):  # reserved for Prometheus itself
        out = "key" + out
    return out


def _label_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class _Series:
    labels: tuple[tuple[str, str], ...]
    point_time: float  # the point's own time (unix s): an older point never replaces a newer one
    updated: float  # monotonic, for expiry
    value: float = 0.0
    count: float = 0.0
    total: float = 0.0
    bounds: tuple[float, ...] = ()
    buckets: list[float] = field(default_factory=list)


@dataclass
class _Family:
    kind: str  # gauge | counter | histogram
    help: str
    series: dict[tuple[tuple[str, str], ...], _Series] = field(default_factory=dict)


class OtlpMetricsCollector(_PromCollector):
    """Latest OTLP points as Prometheus families; thread-safe, bounded, self-expiring."""

    def __init__(
        self,
        *,
        reserved: Iterable[str] = (),
        max_series: int = MAX_SERIES,
        expire_after_s: float = EXPIRE_AFTER_S,
        clock: Any = time.monotonic,
    ) -> None:
        self.reserved = set(reserved)
        self.max_series = max_series
        self.expire_after_s = expire_after_s
        self.clock = clock
        self.dropped = 0
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}
        self._count = 0

    # -- ingest ------------------------------------------------------------------

    def update(self, rows: Iterable[Mapping[str, Any]], *, worker: str | None = None) -> None:
        now = self.clock()
        with self._lock:
            self._expire(now)  # room first: expired series do not count against the limit
            for row in rows:
                self._update_one(row, worker, now)

    def _update_one(self, row: Mapping[str, Any], worker: str | None, now: float) -> None:
        mtype = row.get("MetricType")
        if mtype == "gauge" or (mtype == "sum" and not row.get("IsMonotonic")):
            kind = "gauge"
        elif mtype == "sum":
            kind = "counter"
        elif mtype == "histogram":
            kind = "histogram"
        else:
            return
        name = prom_name(str(row.get("Name") or ""), row.get("Unit"), kind)
        if name in self.reserved or f"{name}_total" in self.reserved:
            return
        family = self._families.get(name)
        if family is None:
            help_text = row.get("Description") or f"OTLP metric {row.get('Name')}"
            family = self._families[name] = _Family(kind, str(help_text))
        elif family.kind != kind:  # one name, one type: the first one seen keeps it
            return
        labels = self._labels(row, worker)
        t = row.get("TimeGenerated")
        point_time = (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() if isinstance(t, datetime) else 0.0
        delta = row.get("Temporality") == "delta"
        s = family.series.get(labels)
        if s is None:
            if self._count >= self.max_series:
                self.dropped += 1
                return
            s = family.series[labels] = _Series(labels, point_time, now)
            self._count += 1
            fresh = True
        else:
            if point_time < s.point_time and not delta:
                return
            fresh = False
        s.point_time = max(point_time, s.point_time)
        s.updated = now
        if kind in ("gauge", "counter"):
            value = float(row.get("Value") or 0.0)
            s.value = s.value + value if (delta and kind == "counter" and not fresh) else value
            return
        bounds = tuple(float(b) for b in (row.get("ExplicitBounds") or ()))
        counts = [float(c) for c in (row.get("BucketCounts") or ())]
        if len(counts) != len(bounds) + 1:
            counts = [0.0] * len(bounds) + [float(row.get("Count") or 0)]
        if delta and not fresh and s.bounds == bounds:
            s.buckets = [a + b for a, b in zip(s.buckets, counts, strict=True)]
            s.count += float(row.get("Count") or 0)
            s.total += float(row.get("Sum") or 0.0)
        else:
            s.bounds, s.buckets = bounds, counts
            s.count = float(row.get("Count") or 0)
            s.total = float(row.get("Sum") or 0.0)

    @staticmethod
    def _labels(row: Mapping[str, Any], worker: str | None) -> tuple[tuple[str, str], ...]:
        labels: dict[str, str] = {}
        service = row.get("ServiceName")
        if service:
            labels["service"] = str(service)
        if worker:
            labels["worker"] = worker
        attrs = row.get("Attributes") or {}
        if isinstance(attrs, str):
            try:
                attrs = json.loads(attrs)
            except ValueError:
                attrs = {}
        for key, value in sorted(attrs.items()) if isinstance(attrs, dict) else ():
            name = label_name(str(key))
            if name in ("service", "worker", "le") or name in labels:
                name = f"exported_{name}"
            labels[name] = _label_value(value)
        return tuple(sorted(labels.items()))

    def _expire(self, now: float) -> None:
        cutoff = now - self.expire_after_s
        for name in list(self._families):
            family = self._families[name]
            stale = [k for k, s in family.series.items() if s.updated < cutoff]
            for k in stale:
                del family.series[k]
            self._count -= len(stale)
            if not family.series:
                del self._families[name]

    # -- exposition -----------------------------------------------------------------

    def describe(self) -> list[Metric]:
        return []  # dynamic: never checked at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self._expire(self.clock())
            snapshot = [
                (
                    name,
                    f.kind,
                    f.help,
                    [(s.labels, s.value, s.count, s.total, s.bounds, list(s.buckets)) for s in f.series.values()],
                )
                for name, f in self._families.items()
            ]
            dropped = self.dropped
        for name, kind, help_text, series in sorted(snapshot, key=lambda f: f[0]):
            # One family per name; a label a series lacks is "" (the same as absent, to Prometheus).
            keys = sorted({k for item in series for k, _ in item[0]})

            def values(labels: tuple[tuple[str, str], ...], keys: list[str] = keys) -> list[str]:
                have = dict(labels)
                return [have.get(k, "") for k in keys]

            if kind == "gauge":
                fam: Metric = GaugeMetricFamily(name, help_text, labels=keys)
                for labels, value, *_ in series:
                    fam.add_metric(values(labels), value)
            elif kind == "counter":
                fam = CounterMetricFamily(name, help_text, labels=keys)
                for labels, value, *_ in series:
                    fam.add_metric(values(labels), value)
            else:
                fam = HistogramMetricFamily(name, help_text, labels=keys)
                for labels, _, count, total, bounds, buckets in series:
                    cumulative, running = [], 0.0
                    for bound, c in zip(bounds, buckets, strict=False):
                        running += c
                        cumulative.append((floatToGoString(bound), running))
                    cumulative.append(("+Inf", count))
                    fam.add_metric(values(labels), buckets=cumulative, sum_value=total)
            yield fam
        drop = CounterMetricFamily(
            "outpost_otlp_metric_series_dropped",
            "OTLP metric series not re-exposed because the series limit was reached",
        )
        drop.add_metric([], float(dropped))
        yield drop

    def series_count(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return self._count
