"""Prometheus metrics for the collector (names are a contract with dashboards and alerts).

Counters and histograms are updated as events arrive; per-worker gauges, queue
depth and certificate expiry are computed at scrape time, so a removed worker's
series simply stop being produced.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as _PromCollector

from outpost import __version__
from outpost.observer import GroupSnapshot, SnapshotProvider
from telemetry.otlp_prom import OtlpMetricsCollector

# No `*_created` series: they double every counter and histogram family on /metrics, and neither the
# dashboards nor the rules read them (rate() copes with restarts by itself). Process-wide, so it also
# covers the forwarder's counters (telemetry/forwarding.py).
disable_created_metrics()

# Families _ScrapeCollector computes at scrape time (OTLP metrics may not take these names).
SCRAPE_FAMILIES = (
    "outpost_worker_up",
    "outpost_worker_last_heartbeat_timestamp_seconds",
    "outpost_worker_clock_skew_seconds",
    "outpost_workers",
    "outpost_queue_depth",
    "outpost_queue_oldest_age_seconds",
    "outpost_diagnose_check_failing",
    "outpost_certificate_expiry_timestamp_seconds",
    "outpost_build_info",
    "outpost_otlp_metric_series_dropped",
    "outpost_worker_slots",
    "outpost_worker_slots_busy",
    "outpost_worker_load1",
    "outpost_worker_cpus",
    "outpost_worker_agent_cpu_quota_percent",
    "outpost_worker_agent_memory_limit_megabytes",
    "outpost_group_slots",
    "outpost_worker_perf",
)

# Jobs run from seconds to hours.
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
QUEUE_WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400)
CPU_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)
RSS_BUCKETS = tuple(float(m << 20) for m in (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384))


@dataclass
class WorkerState:
    name: str
    group: str
    last_heartbeat: float  # server receive time, unix seconds
    clock_skew_s: float | None = None
    capacity: dict[str, float] | None = None  # the latest heartbeat's rows.CAPACITY_COLUMNS


# Heartbeat column -> the per-worker gauge it feeds.
CAPACITY_GAUGES = {
    "SlotsTotal_d": ("outpost_worker_slots", "Jobs the worker runs at most at once (its --concurrency)"),
    "SlotsBusy_d": ("outpost_worker_slots_busy", "Of the worker's slots, those holding a job"),
    "LoadAverage1m_d": ("outpost_worker_load1", "The worker machine's 1-minute load average"),
    "CpuCount_d": ("outpost_worker_cpus", "CPUs of the worker machine"),
    "AgentCpuQuotaPercent_d": (
        "outpost_worker_agent_cpu_quota_percent",
        "CPU quota on the agent's own cgroup, % of one CPU (absent: none); every job shares it",
    ),
    "AgentMemoryLimitMB_d": (
        "outpost_worker_agent_memory_limit_megabytes",
        "Memory limit on the agent's own cgroup, MiB (absent: none); every job shares it",
    ),
}


class FleetState:
    """What the scrape-time gauges read; updated by ingestion, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.workers: dict[tuple[str, str], WorkerState] = {}
        self.checks: dict[tuple[str, str], dict[str, bool]] = {}  # (worker, group) -> check -> failing
        # (worker, group) -> (object, counter, instance) -> the latest Perf value
        self.perf: dict[tuple[str, str], dict[tuple[str, str, str], float]] = {}

    def heartbeat(
        self, name: str, group: str, received: float, skew: float | None, capacity: dict[str, float] | None = None
    ) -> None:
        with self._lock:
            # A worker that moved group is one worker: drop its old series.
            for key in [k for k in self.workers if k[0] == name and k[1] != group]:
                del self.workers[key]
                self.checks.pop(key, None)
            state = self.workers.get((name, group))
            if state is None or received >= state.last_heartbeat:
                self.workers[(name, group)] = WorkerState(
                    name,
                    group,
                    received,
                    skew if skew is not None else (state.clock_skew_s if state else None),
                    capacity if capacity is not None else (state.capacity if state else None),
                )

    def perf_sample(self, name: str, group: str, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self.perf[(name, group)] = {
                (r["ObjectName"], r["CounterName"], r["InstanceName"]): r["CounterValue"] for r in rows
            }

    def diagnose(self, name: str, group: str, results: dict[str, bool]) -> None:
        with self._lock:
            self.checks[(name, group)] = dict(results)

    def remove(self, name: str, group: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self.workers if k[0] == name and (group is None or k[1] == group)]:
                del self.workers[key]
            for key in [k for k in self.checks if k[0] == name and (group is None or k[1] == group)]:
                del self.checks[key]
            for key in [k for k in self.perf if k[0] == name and (group is None or k[1] == group)]:
                del self.perf[key]

    def perf_snapshot(self) -> dict[tuple[str, str], dict[tuple[str, str, str], float]]:
        with self._lock:
            return {k: dict(v) for k, v in self.perf.items()}

    def snapshot(self) -> tuple[list[WorkerState], dict[tuple[str, str], dict[str, bool]]]:
        with self._lock:
            return list(self.workers.values()), {k: dict(v) for k, v in self.checks.items()}


class _ScrapeCollector(_PromCollector):
    def __init__(self, metrics: CollectorMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        now = time.time()
        groups: list[GroupSnapshot] | None = None
        if m.snapshot is not None:
            try:
                groups = m.snapshot()
            except Exception:  # a broken snapshot must not break the whole scrape
                groups = None
        registered: dict[str, set[str]] | None = None
        if groups is not None:
            registered = {g.group: set(g.workers) for g in groups}
            # Workers gone from the control plane are gone from the metrics too.
            for w in m.fleet.snapshot()[0]:
                if w.name not in registered.get(w.group, set()):
                    m.fleet.remove(w.name, w.group)
        workers, checks = m.fleet.snapshot()
        if groups is not None:
            workers = _with_store_liveness(workers, groups)

        up = GaugeMetricFamily(
            "outpost_worker_up", "1 if the worker heartbeated within the stale window", labels=["worker", "group"]
        )
        last = GaugeMetricFamily(
            "outpost_worker_last_heartbeat_timestamp_seconds",
            "Server receive time of the worker's latest heartbeat",
            labels=["worker", "group"],
        )
        skew = GaugeMetricFamily(
            "outpost_worker_clock_skew_seconds",
            "Agent clock minus server clock at the latest heartbeat",
            labels=["worker", "group"],
        )
        counts: dict[tuple[str, str], int] = {}
        seen: set[tuple[str, str]] = set()
        for w in workers:
            alive = now - w.last_heartbeat <= m.stale_after_s
            up.add_metric([w.name, w.group], 1.0 if alive else 0.0)
            last.add_metric([w.name, w.group], w.last_heartbeat)
            if w.clock_skew_s is not None:
                skew.add_metric([w.name, w.group], w.clock_skew_s)
            state = "up" if alive else "down"
            counts[(w.group, state)] = counts.get((w.group, state), 0) + 1
            seen.add((w.name, w.group))
        if registered is not None:
            for group, names in registered.items():
                for name in names:
                    if (name, group) not in seen:  # registered but never heartbeated
                        up.add_metric([name, group], 0.0)
                        counts[(group, "down")] = counts.get((group, "down"), 0) + 1
        yield up
        yield last
        yield skew
        yield from _capacity_families(workers, now, m.stale_after_s)
        perf = GaugeMetricFamily(
            "outpost_worker_perf",
            "The worker machine's latest Perf counters (Processor, Memory, Logical Disk, System)",
            labels=["worker", "group", "object", "counter", "instance"],
        )
        for (name, group), counters in m.fleet.perf_snapshot().items():
            if registered is not None and name not in registered.get(group, set()):
                continue
            for (obj, counter, instance), value in sorted(counters.items()):
                perf.add_metric([name, group, obj, counter, instance], value)
        yield perf

        fleet = GaugeMetricFamily("outpost_workers", "Workers per group by state", labels=["group", "state"])
        all_groups = {g for g, _ in counts} | set(registered or {})
        for group in sorted(all_groups):
            for state in ("up", "down"):
                fleet.add_metric([group, state], float(counts.get((group, state), 0)))
        yield fleet

        depth = GaugeMetricFamily("outpost_queue_depth", "Queued jobs per group", labels=["group"])
        oldest = GaugeMetricFamily("outpost_queue_oldest_age_seconds", "Age of the oldest queued job", labels=["group"])
        for g in groups or []:
            depth.add_metric([g.group], float(g.queue_depth))
            oldest.add_metric([g.group], float(g.oldest_queued_age_s))
        yield depth
        yield oldest

        failing = GaugeMetricFamily(
            "outpost_diagnose_check_failing",
            "1 when the worker's latest diagnose result for the check is fail",
            labels=["worker", "group", "check"],
        )
        for (name, group), results in checks.items():
            if registered is not None and name not in registered.get(group, set()):
                continue
            for check, bad in sorted(results.items()):
                failing.add_metric([name, group, check], 1.0 if bad else 0.0)
        yield failing

        cert = GaugeMetricFamily(
            "outpost_certificate_expiry_timestamp_seconds",
            "notAfter of the certificate the server presents",
            labels=["kind", "subject"],
        )
        info = m.certificate_info()
        if info is not None:
            cert.add_metric(["server", info[0]], info[1])
        yield cert

        build = GaugeMetricFamily("outpost_build_info", "Outpost version", labels=["version"])
        build.add_metric([__version__], 1.0)
        yield build


def _capacity_families(workers: list[WorkerState], now: float, stale_after_s: float) -> Iterator[Metric]:
    """Per-worker capacity and load gauges, and slots per group (live workers only)."""
    families = {
        col: GaugeMetricFamily(name, text, labels=["worker", "group"]) for col, (name, text) in CAPACITY_GAUGES.items()
    }
    group_slots = GaugeMetricFamily(
        "outpost_group_slots", "Job slots of the group's live workers, by state", labels=["group", "state"]
    )
    per_group: dict[str, list[float]] = {}
    for w in workers:
        if not w.capacity:
            continue
        for col, value in w.capacity.items():
            if col in families:
                families[col].add_metric([w.name, w.group], value)
        if now - w.last_heartbeat <= stale_after_s:
            totals = per_group.setdefault(w.group, [0.0, 0.0])
            totals[0] += w.capacity.get("SlotsTotal_d", 0.0)
            totals[1] += w.capacity.get("SlotsBusy_d", 0.0)
    for group, (total, busy) in sorted(per_group.items()):
        group_slots.add_metric([group, "total"], total)
        group_slots.add_metric([group, "busy"], busy)
    yield from families.values()
    yield group_slots


def _with_store_liveness(workers: list[WorkerState], groups: list[GroupSnapshot]) -> list[WorkerState]:
    """Last heartbeats from the shared store (every replica sees the same), where it keeps them.

    The later of the store's time and this process's own is used, so a heartbeat this
    process just took counts at once; the store is written on every heartbeat, so
    replicas agree.
    """
    local = {(w.name, w.group): w for w in workers}
    tracked = {g.group for g in groups if g.heartbeats is not None}
    out = [w for w in workers if w.group not in tracked]
    for g in groups:
        if g.heartbeats is None:
            continue
        for name, stored in g.heartbeats.items():
            mine = local.get((name, g.group))
            times = [t for t in (stored, mine.last_heartbeat if mine else None) if t is not None]
            if times:
                out.append(
                    WorkerState(
                        name,
                        g.group,
                        max(times),
                        mine.clock_skew_s if mine else None,
                        mine.capacity if mine else None,
                    )
                )
    return out


class CollectorMetrics:
    def __init__(self, *, snapshot: SnapshotProvider | None, stale_after_s: float, tls_cert_path: Path | None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.snapshot = snapshot
        self.stale_after_s = stale_after_s
        self.tls_cert_path = tls_cert_path
        self.fleet = FleetState()
        self._cert_cache: tuple[float, tuple[str, float] | None] | None = None
        r = self.registry
        self.jobs = Counter("outpost_jobs", "Job status transitions", ["runbook", "group", "status"], registry=r)
        self.duration = Histogram(
            "outpost_job_duration_seconds",
            "Running to final status",
            ["runbook", "group"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "outpost_job_queue_wait_seconds",
            "Created to started (schedule-to-start)",
            ["runbook", "group"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        # What a job's runbook consumed, as its worker measured it (contract.JobResources).
        self.job_cpu = Histogram(
            "outpost_job_cpu_seconds",
            "CPU time (user + system) of a job's runbook processes",
            ["runbook", "group"],
            buckets=CPU_BUCKETS,
            registry=r,
        )
        self.job_peak_rss = Histogram(
            "outpost_job_peak_rss_bytes",
            "Peak resident memory of a job's largest runbook process",
            ["runbook", "group"],
            buckets=RSS_BUCKETS,
            registry=r,
        )
        self.jobs_lost = Counter(
            "outpost_jobs_lost",
            "Jobs whose worker was lost (lease expired, or its agent restarted without them), by outcome",
            ["group", "outcome"],
            registry=r,
        )
        self.polls = Counter("outpost_polls", "Worker polls by outcome", ["group", "outcome"], registry=r)
        self.dispatches = Counter("outpost_dispatches", "Jobs handed to workers", ["group"], registry=r)
        self.rows = Counter("outpost_telemetry_rows", "Rows stored by the collector", ["table"], registry=r)
        self.duplicates = Counter(
            "outpost_telemetry_duplicate_rows", "Re-sent rows dropped as duplicates", ["table"], registry=r
        )
        self.queries = Counter("outpost_kql_queries", "KQL queries by outcome", ["outcome"], registry=r)
        self.query_seconds = Histogram(
            "outpost_kql_query_duration_seconds",
            "KQL query run time",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        r.register(_ScrapeCollector(self))
        # OTLP metrics agents (or anything else with a worker credential) send, re-exposed.
        own = {
            f.name
            for c in (
                self.jobs,
                self.duration,
                self.queue_wait,
                self.job_cpu,
                self.job_peak_rss,
                self.jobs_lost,
                self.polls,
                self.dispatches,
                self.rows,
                self.duplicates,
                self.queries,
                self.query_seconds,
            )
            for f in c.describe()
        }
        self.otlp = OtlpMetricsCollector(reserved=own | set(SCRAPE_FAMILIES))
        r.register(self.otlp)

    def certificate_info(self) -> tuple[str, float] | None:
        path = self.tls_cert_path
        if path is None:
            return None
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        if self._cert_cache and self._cert_cache[0] == mtime:
            return self._cert_cache[1]
        info: tuple[str, float] | None = None
        try:
            from cryptography import x509

            cert = x509.load_pem_x509_certificate(path.read_bytes())
            info = (cert.subject.rfc4514_string(), cert.not_valid_after_utc.timestamp())
        except (OSError, ValueError):
            info = None
        self._cert_cache = (mtime, info)
        return info

    def render(self) -> bytes:
        return generate_latest(self.registry)
