"""The agent's main loop: long-poll for jobs, run up to `concurrency` at once, survive outages."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from agent.assets_proxy import AssetsProxy
from agent.events import EventPoster
from agent.observe import JobMetrics
from agent.runner import JobRun, RunOptions
from agent.runtime import resolve_python3
from agent.selfcheck import POLL_FAILURES_BEFORE_CHECK, SelfCheck
from agent.telemetry import HeartbeatSender, agent_meter_provider, agent_tracer_provider
from outpost.contract import AGENT_POLL, JobAssignment, JobStatus, PollResponse
from outpost.http import ApiError, make_client, request
from outpost.settings import LONG_POLL_HOLD_S, REQUEST_TIMEOUT_S
from outpost.state import AgentState, Registration

log = logging.getLogger("outpost.agent")

BACKOFF_START_S = 1.0
BACKOFF_CAP_S = 60.0
STATUS_WRITE_EVERY_S = 5.0


class PollInterrupted(Exception):
    """Raised from the signal handler to cut short a long-poll on shutdown."""


class CredentialRejected(Exception):
    """The service no longer knows this worker: re-registration is needed."""


@dataclass
class AgentOptions:
    concurrency: int = 1
    poll_hold_s: float = LONG_POLL_HOLD_S
    poll_interval_s: float = 0.0  # > 0: classic interval polling (with hold 0), for proxies that cut long requests
    stop_grace_s: float = 10.0
    lease_renew_s: float = 3.0
    drain_s: float = 10.0
    backoff_cap_s: float = BACKOFF_CAP_S
    heartbeat_interval_s: float = 60.0
    diagnose_interval_s: float = 3600.0  # 0 disables the periodic self-check
    python: str | None = None
    trusted_keys: Path | None = None  # run only runbooks clear-signed by these GPG keys
    otel: bool = True  # export job spans and metrics over OTLP
    otlp_endpoint: str | None = None  # None: the server this worker is registered to
    metrics_interval_s: float = 60.0


TRUSTED_KEYS_IN_STATE = "trusted-keys"  # <state-dir>/trusted-keys (file or directory) when no option is given


class Agent:
    def __init__(self, state: AgentState, options: AgentOptions) -> None:
        self.state = state
        self.opts = options
        self.registration, self._credential = state.load()
        self.client = self._client(self.registration, self._credential)
        self.stop_event = threading.Event()
        self._slots = threading.BoundedSemaphore(options.concurrency)
        self._runs: dict[str, JobRun] = {}
        self._runs_lock = threading.Lock()
        self._last_status_write = 0.0
        self._in_poll = False
        self.run_options = RunOptions(
            work_root=state.dir / "work",
            worker_name=self.registration.name,
            stop_grace_s=options.stop_grace_s,
            lease_renew_s=options.lease_renew_s,
            python=options.python or resolve_python3(),
            trusted_keys=self._trusted_keys(state, options),
            assets=AssetsProxy(self.client),
            events=EventPoster(self.client),
        )
        self._tracer_provider, self._meter_provider = self._otel(options)
        if self._tracer_provider is not None:
            self.run_options.tracer = self._tracer_provider.get_tracer("outpost.agent")
        if self._meter_provider is not None:
            self.run_options.job_metrics = JobMetrics(self._meter_provider, self.registration.group)

    def _otel(self, options: AgentOptions) -> tuple[Any, Any]:
        if not options.otel:
            return None, None
        reg = self.registration
        endpoint = options.otlp_endpoint or reg.url
        # The worker credential goes only to its own server; another collector gets the
        # headers from OTEL_EXPORTER_OTLP_HEADERS, as every OTel exporter does.
        own = urlsplit(endpoint)[:2] == urlsplit(reg.url)[:2]  # same scheme and host:port
        headers = {"Authorization": f"Bearer {self._credential}"} if own else None
        common = {"headers": headers, "worker": reg.name, "ca_file": reg.ca_file if own else None}
        return (
            agent_tracer_provider(endpoint, **common),
            agent_meter_provider(endpoint, interval_s=options.metrics_interval_s, **common),
        )

    @staticmethod
    def _trusted_keys(state: AgentState, options: AgentOptions) -> Path | None:
        if options.trusted_keys is not None:
            if not options.trusted_keys.exists():
                raise OSError(f"--trusted-keys {options.trusted_keys} does not exist")
            return options.trusted_keys.absolute()
        default = state.dir / TRUSTED_KEYS_IN_STATE
        return default if default.exists() else None

    @staticmethod
    def _client(reg: Registration, credential: str) -> httpx.Client:
        return make_client(reg.url, token=credential, ca_file=reg.ca_file, timeout=REQUEST_TIMEOUT_S)

    def _note(self, **fields: object) -> None:
        now = time.monotonic()
        if now - self._last_status_write >= STATUS_WRITE_EVERY_S:
            self._last_status_write = now
            try:
                self.state.update_status(pid=os.getpid(), **fields)
            except OSError as exc:  # a full disk must not stop the agent from working
                log.warning("cannot update %s: %s", self.state.status_path, exc)

    def poll_once(self, free: int = 1) -> list[JobAssignment]:
        """Ask for up to `free` jobs (this worker's free slots), holding up to the poll hold time."""
        hold = self.opts.poll_hold_s
        self._in_poll = True
        try:
            response = request(self.client, "POST", AGENT_POLL, params={"wait": hold, "max": free}, timeout=hold + 5)
        except ApiError as exc:
            if exc.status in (401, 403):
                raise CredentialRejected(exc.message) from None
            raise
        finally:
            self._in_poll = False
        self._note(last_poll_ok=datetime.now(UTC).isoformat())
        if response.status_code == 204:
            return []
        return PollResponse.model_validate_json(response.content).jobs

    def _run_job(self, job: JobAssignment, holds_slot: bool = True) -> None:
        run = JobRun(self.client, job, self.run_options)
        with self._runs_lock:
            self._runs[job.job_id] = run
        try:
            status = run.run()
            log.info("job %s (%s) ended %s", job.job_id, job.runbook, status)
        finally:
            with self._runs_lock:
                self._runs.pop(job.job_id, None)
            if holds_slot:
                self._slots.release()

    def _take_free_slots(self) -> int:
        """After one slot is held: take every other free one too, without waiting."""
        taken = 1
        while taken < self.opts.concurrency and self._slots.acquire(blocking=False):
            taken += 1
        return taken

    def _release_slots(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    def interrupt(self) -> None:
        """Signal-handler entry: stop taking jobs, and abandon a poll in flight at once.

        The handler runs in the main thread, which is the one blocked in the poll; raising
        there ends the wait now instead of after the server's hold time.
        """
        self.stop_event.set()
        if self._in_poll:
            raise PollInterrupted()

    def run(self) -> int:
        """Poll until stopped. Returns the process exit code."""
        reg = self.registration
        log.info(
            "worker %s (group %s) polling %s with concurrency %d",
            reg.name,
            reg.group,
            reg.url,
            self.opts.concurrency,
        )
        heartbeat_client = self._client(reg, self._credential)
        heartbeat = HeartbeatSender(
            self.state.dir,
            heartbeat_client,
            worker_name=reg.name,
            group=reg.group,
            interval_s=self.opts.heartbeat_interval_s,
        )
        beat = threading.Thread(target=heartbeat.run, args=(self.stop_event,), name="heartbeat", daemon=True)
        beat.start()
        selfcheck: SelfCheck | None = None
        if self.opts.diagnose_interval_s > 0:
            selfcheck = SelfCheck(
                self.state.dir,
                heartbeat_client,
                interval_s=self.opts.diagnose_interval_s,
                first_after_s=min(60.0, self.opts.diagnose_interval_s),
            )
            threading.Thread(target=selfcheck.run, args=(self.stop_event,), name="selfcheck", daemon=True).start()
        backoff = 0.0
        failures = 0
        assets = self.run_options.assets
        if assets is not None:
            assets.start()
        if self.run_options.trusted_keys is not None:
            log.info("runbook signing enforced: trusted keys in %s", self.run_options.trusted_keys)
        try:
            while not self.stop_event.is_set():
                if not self._slots.acquire(timeout=0.5):
                    continue
                free = self._take_free_slots()
                try:
                    jobs = self.poll_once(free)
                except PollInterrupted:
                    self._release_slots(free)
                    break
                except CredentialRejected as exc:
                    self._release_slots(free)
                    log.error("%s", exc)
                    return 3
                except ApiError as exc:
                    self._release_slots(free)
                    failures += 1
                    if failures == POLL_FAILURES_BEFORE_CHECK and selfcheck is not None:
                        selfcheck.trigger()
                    backoff = min(max(BACKOFF_START_S, backoff * 2), self.opts.backoff_cap_s)
                    delay = random.uniform(backoff / 2, backoff)  # jitter: a fleet must not reconnect in step
                    log.warning("poll failed: %s; next try in %.1f s", exc.message, delay)
                    self.stop_event.wait(delay)
                    continue
                backoff = 0.0
                failures = 0
                if len(jobs) > free:  # a service bug; the jobs are ours now, so run them rather than strand them
                    log.error("the service handed out %d jobs for %d free slots", len(jobs), free)
                self._release_slots(free - len(jobs))  # each job releases its own slot when it ends
                for i, job in enumerate(jobs):
                    log.info("job %s (%s) claimed", job.job_id, job.runbook)
                    threading.Thread(
                        target=self._run_job, args=(job, i < free), name=f"job-{job.job_id[:8]}", daemon=True
                    ).start()
                if not jobs and self.opts.poll_interval_s > 0:
                    self.stop_event.wait(self.opts.poll_interval_s)
        finally:
            self.stop_event.set()
            self._drain()
            beat.join(timeout=5)
            if assets is not None:
                assets.stop()
            heartbeat_client.close()
            for provider in (self._tracer_provider, self._meter_provider):
                if provider is not None:
                    provider.shutdown()  # flushes spans and a last metrics export
            self.client.close()
        return 0

    def _drain(self) -> None:
        """On shutdown: let running jobs finish for `drain_s`, then stop them."""
        deadline = time.monotonic() + self.opts.drain_s
        while time.monotonic() < deadline:
            with self._runs_lock:
                if not self._runs:
                    return
            time.sleep(0.1)
        with self._runs_lock:
            runs = list(self._runs.values())
        for run in runs:
            run.stop(f"worker {self.registration.name} shut down", JobStatus.STOPPED)
        end = time.monotonic() + self.opts.stop_grace_s + 10
        while time.monotonic() < end:
            with self._runs_lock:
                if not self._runs:
                    return
            time.sleep(0.1)
