"""The agent's main loop: long-poll for jobs, run up to `concurrency` at once, survive outages."""

from __future__ import annotations

import logging
import os
import random
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from agent import leftovers, limits
from agent.assets_proxy import AssetsProxy
from agent.events import EventPoster
from agent.failover import FailoverClient
from agent.observe import JobMetrics
from agent.runner import JobRun, RunOptions
from agent.runtime import RunAsUser, RuntimeRefusal, default_runbook_user, detect_credential_mask, resolve_python3
from agent.runtime_envs import PipConfig, RuntimeCache
from agent.selfcheck import POLL_FAILURES_BEFORE_CHECK, SelfCheck
from agent.telemetry import HeartbeatSender, RequestErrors, agent_meter_provider, agent_tracer_provider
from agent.watchdog import Watchdog
from outpost.contract import AGENT_POLL, HEALTH, JobAssignment, JobStatus, PollRequest, PollResponse, StreamType
from outpost.contract import MAX_HELD_PER_POLL as MAX_HELD
from outpost.http import ApiError, request
from outpost.settings import LONG_POLL_HOLD_S, REQUEST_TIMEOUT_S
from outpost.state import AgentState, Registration

SHARED_RUNTIME_DIR = Path("/var/cache/outpost/runtimes")  # a root agent's default --runtime-dir

log = logging.getLogger("outpost.agent")

BACKOFF_START_S = 1.0
BACKOFF_CAP_S = 15.0
PROBE_EVERY_S = 1.5  # while backing off: a cheap health probe this often; success ends the wait
STATUS_WRITE_EVERY_S = 5.0
LEFTOVER_SEQ = 0xFFFF_FF00  # the seq of a restart notice: past any record the crashed run can have sent
FINISHED_MEMORY = 4096  # (job, activation) pairs remembered after they end: a late re-offer never re-runs one


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
    runbook_user: str | None = None  # None: `outpost-runbook` if it exists and the agent is root
    limits: str = "auto"  # how job limits are enforced: auto | cgroup | rlimit (agent/limits.py)
    cgroup_root: Path | None = None  # a delegated cgroup v2 directory for job cgroups
    runtime_dir: Path | None = None  # where runtime environments are built (default: <state-dir>/runtimes)
    pip: PipConfig = field(default_factory=PipConfig)  # the index and find-links runtime builds use


TRUSTED_KEYS_IN_STATE = "trusted-keys"  # <state-dir>/trusted-keys (file or directory) when no option is given


class Agent:
    def __init__(self, state: AgentState, options: AgentOptions) -> None:
        self.state = state
        self.opts = options
        self.registration, self._credential = state.load()
        self._keep_credential_private()
        self._lock_fd = state.lock()  # one agent per state dir: what it holds is all that is held
        self.client = self._client(self.registration, self._credential)
        self.stop_event = threading.Event()
        self._slots = threading.BoundedSemaphore(options.concurrency)
        self._runs: dict[str, JobRun] = {}
        self._runs_lock = threading.Lock()
        # Every job received and not yet finished, by id -> activation. Filled by the poll loop as an
        # answer arrives (before the next poll goes out), emptied by the job's thread when it ends.
        self._held: dict[str, int] = {}
        self._finished: OrderedDict[tuple[str, int], None] = OrderedDict()
        self.watchdog = Watchdog()
        self._last_status_write = 0.0
        self._in_poll = False
        # Whether this process's last poll was answered: until then (a start, or a poll that failed
        # on the wire) the service must compare `held` with what it handed out (PollRequest.settle).
        self._last_poll_answered = False
        self._mask_why = ""  # why the credential is (not) hidden from a non-root agent's runbooks
        runbook_user = self._runbook_user(options)
        self.run_options = RunOptions(
            work_root=state.dir / "work",
            worker_name=self.registration.name,
            stop_grace_s=options.stop_grace_s,
            lease_renew_s=options.lease_renew_s,
            python=resolve_python3(options.python, runbook_user),  # one that user can run
            python_explicit=options.python is not None,
            enforcement=limits.detect(options.limits, options.cgroup_root),
            trusted_keys=self._trusted_keys(state, options),
            assets=AssetsProxy(self.client),
            events=EventPoster(self.client),
            watchdog=self.watchdog,
            runbook_user=runbook_user,
        )
        # The state dir is 0700 (it holds the credential), so runbooks run as another user cannot
        # reach environments built inside it: a root agent keeps them in /var/cache instead.
        default_runtimes = SHARED_RUNTIME_DIR if self.run_options.runbook_user is not None else state.dir / "runtimes"
        runtime_dir = options.runtime_dir or default_runtimes
        self.run_options.runtimes = RuntimeCache(runtime_dir, self.run_options.python, options.pip)
        if self.run_options.runbook_user is None:  # a non-root agent: its runbooks run as itself
            self.run_options.credential_mask, self._mask_why = detect_credential_mask(
                state.dir, self.run_options.work_root, (runtime_dir,)
            )
        self._tracer_provider, self._meter_provider = self._otel(options)
        if self._tracer_provider is not None:
            self.run_options.tracer = self._tracer_provider.get_tracer("outpost.agent")
        if self._meter_provider is not None:
            self.run_options.job_metrics = JobMetrics(self._meter_provider, self.registration.group)
            if isinstance(self.client, FailoverClient):
                self.client.on_error = RequestErrors(self._meter_provider, self.registration.group).count

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

    def _keep_credential_private(self) -> None:
        """Runbooks run as another user: the credential must stay 0600 whatever happened to it since register."""
        path = self.state.credential_path
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
            log.warning("%s was readable by others (mode %03o); it is 0600 again", path, mode)

    def _runbook_user(self, options: AgentOptions) -> RunAsUser | None:
        try:
            return default_runbook_user(options.runbook_user, self.registration.name)
        except RuntimeRefusal as exc:
            raise OSError(f"--runbook-user: {exc}" if options.runbook_user else str(exc)) from None

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
        return FailoverClient(reg.server_urls, token=credential, ca_file=reg.ca_file, timeout=REQUEST_TIMEOUT_S)

    def _note(self, **fields: object) -> None:
        now = time.monotonic()
        if now - self._last_status_write >= STATUS_WRITE_EVERY_S:
            self._last_status_write = now
            try:
                self.state.update_status(pid=os.getpid(), **fields)
            except OSError as exc:  # a full disk must not stop the agent from working
                log.warning("cannot update %s: %s", self.state.status_path, exc)

    def _announce_runbook_user(self) -> None:
        """Say who runs jobs without RunAs, in the log and status.json (`diagnose` reads it)."""
        user = self.run_options.runbook_user
        opts = self.run_options
        if user is not None:
            log.info("runbooks without RunAs run as %s (uid %d)", user.name, user.uid)
        else:  # a non-root agent, whose runbooks run as itself (a root one refuses to start without a user)
            hidden = opts.credential_mask is not None
            log.log(
                logging.INFO if hidden else logging.WARNING,
                "runbooks without RunAs run as the agent's own user; the credential is %s: %s",
                "hidden from them" if hidden else "readable by them",
                self._mask_why,
            )
        enforcement = opts.enforcement
        assert enforcement is not None
        log.info(
            "Python runbooks run with %s; job limits are enforced by %s (%s)",
            opts.python or "no python3 (none found: pass --python PATH)",
            enforcement.mechanism,
            enforcement.why,
        )
        self._note_now(
            runbook_user=user.name if user else None,
            runbooks_can_read_credential=user is None and opts.credential_mask is None,
            credential_hidden_by="mount namespace" if user is None and opts.credential_mask is not None else None,
            runbook_python=opts.python,
            limits_enforced_by=enforcement.mechanism,
            limits_enforcement=enforcement.why,
        )

    def _note_now(self, **fields: object) -> None:
        try:
            self.state.update_status(pid=os.getpid(), **fields)
        except OSError as exc:
            log.warning("cannot update %s: %s", self.state.status_path, exc)

    def _capacity(self) -> dict[str, Any]:
        """Heartbeat columns: slots, busy slots (jobs held), machine load, how limits are enforced, and the
        CPU quota and memory limit on the agent's own cgroup (they bound every job it runs)."""
        with self._runs_lock:
            busy = len(self._held)
        enforcement = self.run_options.enforcement
        return {
            "SlotsTotal_d": self.opts.concurrency,
            "SlotsBusy_d": min(busy, self.opts.concurrency),
            "LoadAverage1m_d": round(os.getloadavg()[0], 2),
            "CpuCount_d": os.cpu_count() or 1,
            "LimitsEnforcedBy_s": enforcement.mechanism if enforcement else None,
            **limits.agent_cgroup_columns(),
            "RuntimeEnvironments_s": ",".join(self.run_options.runtimes.held()) if self.run_options.runtimes else "",
        }

    def poll_once(self, free: int = 1) -> list[JobAssignment]:
        """Ask for up to `free` jobs (this worker's free slots), holding up to the poll hold time."""
        hold = self.opts.poll_hold_s
        with self._runs_lock:
            held = PollRequest(held=sorted(self._held)[:MAX_HELD], settle=not self._last_poll_answered)
        self._in_poll = True
        self._last_poll_answered = False
        try:
            response = request(
                self.client,
                "POST",
                AGENT_POLL,
                params={"wait": hold, "max": free},
                json=held.model_dump(),
                timeout=hold + 5,
            )
        except ApiError as exc:
            if exc.status in (401, 403):
                raise CredentialRejected(exc.message) from None
            raise
        finally:
            self._in_poll = False
        self._note(last_poll_ok=datetime.now(UTC).isoformat())
        if response.status_code == 204:
            self._last_poll_answered = True
            return []
        jobs = PollResponse.model_validate_json(response.content).jobs
        self._last_poll_answered = True
        return jobs

    def _accept(self, jobs: list[JobAssignment]) -> list[JobAssignment]:
        """Take the poll's jobs into `held`; drop a re-offer of a job already held or already run."""
        new: list[JobAssignment] = []
        with self._runs_lock:
            for job in jobs:
                if job.job_id in self._held or (job.job_id, job.activation) in self._finished:
                    log.debug("job %s: offered again, already held or run here; not started twice", job.job_id)
                    continue
                self._held[job.job_id] = job.activation
                new.append(job)
        return new

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
                self._held.pop(job.job_id, None)
                self._finished[(job.job_id, job.activation)] = None
                while len(self._finished) > FINISHED_MEMORY:
                    self._finished.popitem(last=False)
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
        urls = reg.server_urls
        log.info(
            "worker %s (group %s) polling %s with concurrency %d",
            reg.name,
            reg.group,
            ", ".join(urls) if len(urls) > 1 else urls[0],
            self.opts.concurrency,
        )
        heartbeat_client = self._client(reg, self._credential)
        heartbeat = HeartbeatSender(
            self.state.dir,
            heartbeat_client,
            worker_name=reg.name,
            group=reg.group,
            interval_s=self.opts.heartbeat_interval_s,
            capacity=self._capacity,
        )
        selfcheck: SelfCheck | None = None
        if self.opts.diagnose_interval_s > 0:
            selfcheck = SelfCheck(
                self.state.dir,
                heartbeat_client,
                interval_s=self.opts.diagnose_interval_s,
                first_after_s=min(60.0, self.opts.diagnose_interval_s),
            )
        assets = self.run_options.assets
        beat = threading.Thread(target=heartbeat.run, args=(self.stop_event,), name="heartbeat", daemon=True)
        try:
            self.watchdog.start()
            self._recover()
            beat.start()
            if selfcheck is not None:
                threading.Thread(target=selfcheck.run, args=(self.stop_event,), name="selfcheck", daemon=True).start()
            if assets is not None:
                assets.start()
            self._announce_runbook_user()
            if self.run_options.trusted_keys is not None:
                log.info("runbook signing enforced: trusted keys in %s", self.run_options.trusted_keys)
            return self._poll_loop(selfcheck)
        finally:
            self.stop_event.set()
            self._drain()
            if beat.is_alive():
                beat.join(timeout=5)
            if assets is not None:
                assets.stop()
            self.watchdog.stop()
            heartbeat_client.close()
            for provider in (self._tracer_provider, self._meter_provider):
                if provider is not None:
                    provider.shutdown()  # flushes spans and a last metrics export
            self.client.close()

    def _poll_loop(self, selfcheck: SelfCheck | None) -> int:
        backoff = 0.0
        failures = 0
        outage_since: float | None = None
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
                if outage_since is None:  # one line per outage, not one per failed poll
                    outage_since = time.monotonic()
                    log.warning("poll failed: %s; retrying with backoff (up to %.0f s)", exc.message, backoff)
                else:
                    log.debug("poll failed again: %s; next try in %.1f s", exc.message, delay)
                self._back_off(delay)
                continue
            if outage_since is not None:
                log.info("server reachable again after %.1f s", time.monotonic() - outage_since)
                outage_since = None
            backoff = 0.0
            failures = 0
            if len(jobs) > free:  # a service bug; the jobs are ours now, so run them rather than strand them
                log.error("the service handed out %d jobs for %d free slots", len(jobs), free)
            new = self._accept(jobs)  # before the next poll: that poll's `held` must list them
            self._release_slots(free - min(len(new), free))  # each started job releases its own slot when it ends
            for i, job in enumerate(new):
                log.info("job %s (%s) claimed", job.job_id, job.runbook)
                threading.Thread(
                    target=self._run_job, args=(job, i < free), name=f"job-{job.job_id[:8]}", daemon=True
                ).start()
            if not jobs and self.opts.poll_interval_s > 0:
                self.stop_event.wait(self.opts.poll_interval_s)
        return 0

    def _back_off(self, delay: float) -> None:
        """Wait `delay`, probing the server's health every PROBE_EVERY_S: back at once when it answers."""
        end = time.monotonic() + delay
        while not self.stop_event.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            if self.stop_event.wait(min(PROBE_EVERY_S, left)):
                return
            if end - time.monotonic() <= 0:
                return
            try:
                request(self.client, "GET", HEALTH, attempts=1, timeout=2.0)
            except ApiError:
                continue
            self.stop_event.wait(random.uniform(0, 0.5))  # a whole fleet must not come back in the same ms
            return

    def _recover(self) -> None:
        """Before the first poll: kill and clean up what a previous agent process left in work/."""
        enforcement = self.run_options.enforcement
        for left in leftovers.recover(self.run_options.work_root):
            if enforcement is not None:
                enforcement.remove_leftover(left.job_id)
            if left.killed:
                log.warning(
                    "job %s: killed %d runbook process(es) left by a previous agent (PIDs %s)",
                    left.job_id,
                    len(left.killed),
                    " ".join(map(str, left.killed)),
                )
            if left.record is None:
                continue
            text = f"the agent on {self.registration.name} restarted while this job ran"
            text += (
                f"; the runbook processes it left (PIDs {' '.join(map(str, left.killed))}) were killed"
                if left.killed
                else "; no runbook process of it was still running"
            )
            self._report_leftover(left.job_id, left.record.activation, text)

    def _report_leftover(self, job_id: str, activation: int, text: str) -> None:
        """A Warning in the job's streams, if the service still counts it as this worker's (else a 409)."""
        record = {
            "seq": (activation << 32) | LEFTOVER_SEQ,
            "stream": StreamType.WARNING.value,
            "time": datetime.now(UTC).isoformat(),
            "text": text,
        }
        try:
            self.run_options.events.send(job_id, {"records": [record]})
        except ApiError as exc:
            log.debug("job %s: leftover not reported (%s)", job_id, exc.message)
            return
        log.info("job %s: reported the restart in its Warning stream", job_id)

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
