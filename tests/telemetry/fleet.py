"""A small, realistic fleet written through the collector's own ingest path.

Three workers: `w1` and `w2` (group `linux`) heartbeat every 5 minutes up to now;
`w3` (group `edge`) stopped 30 hours ago. Jobs: one of each final status, error
streams, the runbooks the published queries look for, and AuditEvent rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from outpost.contract import StreamRecord
from outpost.observer import JobEvent
from telemetry.collector import Collector

WORKERS = {"w1": "linux", "w2": "linux", "w3": "edge"}
STALE = {"w3"}
FAILED_JOBS = {"job-broken": "Broken", "job-flaky": "Flaky"}  # Failed, Suspended


def hours_since_w3_stopped(now: datetime) -> int:
    """Kusto's datetime_diff("hour") counts hour boundaries: 30 or 31 depending on the minute."""
    last = FILLED_AT - timedelta(hours=30)
    return int(
        (
            now.replace(minute=0, second=0, microsecond=0) - last.replace(minute=0, second=0, microsecond=0)
        ).total_seconds()
        // 3600
    )


FILLED_AT = datetime.now(UTC)


def heartbeat(name: str, t: datetime, n: int) -> dict:
    return {
        "TimeGenerated": t.isoformat(),
        "ComputerIP": {"w1": "10.0.0.11", "w2": "10.0.0.12", "w3": "10.0.1.13"}[name],
        "OSType": "Linux",
        "OSName": "Ubuntu",
        "OSMajorVersion": "22",
        "OSMinorVersion": "04",
        "Version": "0.1.0",
        "SourceComputerId": f"00000000-0000-4000-8000-00000000000{name[-1]}",
        "Solutions": "outpost",
        "HeartbeatId": f"{name}-{n}",
    }


def fill(collector: Collector) -> None:
    # Times are relative to the moment of filling, not of import: a long test session must
    # not age the "live" workers past the 5-minute staleness the published queries use.
    global FILLED_AT
    FILLED_AT = NOW = datetime.now(UTC)
    for name, group in WORKERS.items():
        if name in STALE:
            # Within the 2 days the collector keeps as sent (older TimeGenerated becomes the receive time).
            times = [NOW - timedelta(hours=46) + timedelta(minutes=5 * i) for i in range(16 * 12 + 1)]
        else:
            times = [NOW - timedelta(hours=26) + timedelta(minutes=5 * i) for i in range(26 * 12 + 1)]
        rows = [heartbeat(name, t, i) for i, t in enumerate(times)]
        collector.ingest_heartbeats(rows, worker=name, group=group, received=NOW)

    obs = collector.observer
    base = NOW - timedelta(hours=2)

    def job(
        job_id: str,
        runbook: str,
        final: str,
        worker: str = "w1",
        streams: list[tuple[str, str]] = (),
        offset_min: int = 0,
    ) -> None:
        created = base + timedelta(minutes=offset_min)
        started = created + timedelta(seconds=5)
        ended = started + timedelta(seconds=30)
        group = WORKERS[worker]
        ev = dict(job_id=job_id, runbook=runbook, group=group, created_at=created)
        obs.on_job_status(JobEvent(**ev, worker=None, status="New", time=created))
        obs.on_job_status(JobEvent(**ev, worker=worker, status="Activating", time=created + timedelta(seconds=2)))
        obs.on_job_status(JobEvent(**ev, worker=worker, status="Running", time=started, started_at=started))
        if streams:
            recs = [
                StreamRecord(seq=i, stream=s, time=(started + timedelta(seconds=i + 1)).isoformat(), text=text)
                for i, (s, text) in enumerate(streams)
            ]
            obs.on_job_streams(JobEvent(**ev, worker=worker, status="Running", time=started), recs)
        obs.on_job_status(
            JobEvent(
                **ev,
                worker=worker,
                status=final,
                time=ended,
                started_at=started,
                ended_at=ended,
                description=f"exit {0 if final == 'Completed' else 1}",
            )
        )

    job("job-hello", "Hello", "Completed", streams=[("Output", "hello"), ("Verbose", "done")])
    job(
        "job-broken",
        "Broken",
        "Failed",
        worker="w2",
        streams=[("Output", "starting"), ("Error", "boom: disk full"), ("Error", "giving up")],
        offset_min=5,
    )
    job("job-stop", "Stopper", "Stopped", offset_min=10)
    job("job-flaky", "Flaky", "Suspended", worker="w2", offset_min=15)
    job(
        "job-avd",
        "AvdStorageLogData",
        "Completed",
        offset_min=20,
        streams=[
            ("Output", "Azure Files,sub1,rg1,stor1,share1,100,97,3.00"),
            ("Output", "Azure Files,sub1,rg1,stor1,share2,100,50,50.00"),
        ],
    )
    job("job-sched", "ScheduledStartStop_Parent", "Completed", offset_min=25)
    collector.audit(NOW - timedelta(hours=3), "Publish runbook", "Runbook Hello", "admin")
    collector.audit(NOW - timedelta(hours=3), "Create variable", "Variable limit", "admin")
