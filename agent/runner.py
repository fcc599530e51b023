"""Run one job: a runbook in its own process group, streams out, lease kept, stop honoured."""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agent import leftovers, observe, resources
from agent.assets_proxy import AssetsProxy
from agent.classify import classify_stdout, decode_line, split_long
from agent.events import EventPoster, EventShipper
from agent.leftovers import JobRecord
from agent.limits import Confinement, Enforcement
from agent.observe import JobMetrics
from agent.runtime import (
    CredentialMask,
    RunAsUser,
    RuntimeRefusal,
    check_python3,
    python_for,
    resolve_run_as,
    runbook_environment,
    runbook_pythonpath,
    unwrap_clearsigned,
    verify_clearsigned,
)
from agent.runtime_envs import RuntimeCache
from agent.watchdog import Watchdog, can_switch_users, die_with_parent
from outpost.contract import AGENT_LEASE, JobAssignment, JobResources, JobStatus, RunbookType, StreamType
from outpost.http import ApiError, request

log = logging.getLogger("outpost.agent")

SUFFIX = {RunbookType.PYTHON3: ".py", RunbookType.BASH: ".sh", RunbookType.PWSH: ".ps1"}
SDK_FILE = Path(__file__).parent / "sdk" / "automationassets.py"
MAX_PARTIAL_LINE = 1 << 20  # bytes of a line without its newline held before they go out as records


@dataclass
class RunOptions:
    work_root: Path
    worker_name: str
    events: EventPoster  # shared by all the worker's jobs
    stop_grace_s: float = 10.0
    lease_renew_s: float = 3.0
    python: str | None = None
    python_explicit: bool = False  # --python PATH: never swapped for another interpreter
    trusted_keys: Path | None = None  # run only runbooks GPG clear-signed by these keys
    assets: AssetsProxy | None = None  # the runbook's automationassets endpoint
    tracer: Any = None  # OpenTelemetry tracer for `job run` spans (None: no-op)
    job_metrics: JobMetrics | None = None
    watchdog: Watchdog | None = None  # kills the runbooks if the agent dies
    runbook_user: RunAsUser | None = None  # jobs without RunAs run as this user (see agent/runtime.py)
    enforcement: Enforcement | None = None  # how the job's limits are enforced (agent/limits.py); None: rlimit
    runtimes: RuntimeCache | None = None  # builds and caches the jobs' runtime environments
    credential_mask: CredentialMask | None = None  # a non-root agent's own-user runbooks: state dir hidden


def build_argv(params: list[tuple[str | None, str]]) -> list[str]:
    """Positional values first, in the order given; then each named one as `--name value`."""
    argv = [value for name, value in params if name is None]
    for name, value in params:
        if name is not None:
            argv += [f"--{name}", value]
    return argv


def command_for(job: JobAssignment, script: Path, python: str | None) -> list[str]:
    args = build_argv([(p.name, p.value) for p in job.params])
    if job.runbook_type == RunbookType.PYTHON3:
        if python is None:  # the agent resolves one at start (agent/runtime.py): never its own venv's
            raise FileNotFoundError("no python3 for runbooks on this worker (pass --python PATH)")
        return [python, "-u", str(script), *args]
    if job.runbook_type == RunbookType.BASH:
        return [shutil.which("bash") or "/bin/bash", str(script), *args]
    pwsh = shutil.which("pwsh")
    if pwsh is None:
        raise FileNotFoundError("pwsh (PowerShell 7) is not installed on this worker")
    return [pwsh, "-NoLogo", "-NonInteractive", "-NoProfile", "-File", str(script), *args]


class JobRun:
    def __init__(self, client: httpx.Client, job: JobAssignment, options: RunOptions) -> None:
        self.client = client
        self.job = job
        self.opts = options
        self.events = EventShipper(options.events, job.job_id, job.activation)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop_reason: str | None = None  # set once a stop or timeout begins
        self._stop_status = JobStatus.STOPPED
        self._lease_lost = threading.Event()
        self._done = threading.Event()
        self._kill_lock = threading.Lock()
        self._workdir: Path | None = None
        self._exited = False  # the runbook has ended (or never started): a lease 409 now is no news
        # Set once the runbook process is reaped, by the supervising thread only (wait4 gives its rusage;
        # any other wait on it would take that away).
        self._reaped = threading.Event()
        self._rusage: Any = None
        self._resources: JobResources | None = None

    # -- lease -----------------------------------------------------------------
    def _keep_lease(self) -> None:
        path = AGENT_LEASE.format(job_id=self.job.job_id)
        failing = False
        while not self._done.wait(self.opts.lease_renew_s):
            try:
                answer = request(self.client, "POST", path).json()
            except ApiError as exc:
                if exc.status == 409:
                    if self._exited:  # the job is ending (its final status may just have landed): nothing to kill
                        return
                    log.warning("job %s: lease lost (%s); killing the runbook", self.job.job_id, exc.message)
                    self._lease_lost.set()
                    self.stop("lease lost", JobStatus.FAILED, grace=0)
                    return
                # Once per streak: an outage must not log a line per job per renewal.
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "job %s: lease renewal failed: %s",
                    self.job.job_id,
                    exc.message,
                )
                failing = True
                continue
            failing = False
            if "stop" in answer.get("actions", []):
                self.stop("stopped by request", JobStatus.STOPPED)

    # -- stop ------------------------------------------------------------------
    def stop(self, reason: str, status: JobStatus, grace: float | None = None) -> None:
        """SIGTERM the whole process group, SIGKILL after the grace period."""
        with self._kill_lock:
            if self._stop_reason is not None:
                return
            self._stop_reason = reason
            self._stop_status = status
        proc = self._proc
        if proc is None or self._reaped.is_set():
            return
        grace = self.opts.stop_grace_s if grace is None else grace
        threading.Thread(target=self._terminate, args=(proc, grace), daemon=True).start()

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _terminate(self, proc: subprocess.Popen[bytes], grace: float) -> None:
        self._signal_group(proc, signal.SIGTERM)
        if not self._reaped.wait(grace):
            self._signal_group(proc, signal.SIGKILL)

    # -- output ----------------------------------------------------------------
    def _emit(self, raw: bytes, is_stderr: bool) -> None:
        line = decode_line(raw)
        stream, text = (StreamType.ERROR, line) if is_stderr else classify_stdout(line)
        for part in split_long(text):
            self.events.record(stream, part)

    def _supervise(self, proc: subprocess.Popen[bytes], deadline: float | None) -> int:
        """Read both pipes line by line and wait for the exit, in this one thread; return the exit code.

        One selector over stdout, stderr and a pidfd of the process: no reader threads per
        job, and the exit is seen when it happens rather than at the next poll of waitpid.
        """
        assert proc.stdout is not None and proc.stderr is not None
        sel = selectors.DefaultSelector()
        partial: dict[bool, bytes] = {False: b"", True: b""}
        for pipe, is_stderr in ((proc.stdout, False), (proc.stderr, True)):
            sel.register(pipe, selectors.EVENT_READ, is_stderr)
        try:
            pidfd: int | None = os.pidfd_open(proc.pid)
            sel.register(pidfd, selectors.EVENT_READ, None)
        except OSError:  # no pidfds here (old kernel, seccomp): look at the process between reads
            pidfd = None
        code: int | None = None
        try:
            while sel.get_map() or code is None:
                timeout = 0.5 if pidfd is not None else 0.05
                if deadline is not None and self._stop_reason is None:
                    timeout = min(timeout, max(0.0, deadline - time.monotonic()))
                for key, _ in sel.select(timeout):
                    if key.data is None:  # the pidfd: the runbook's process has exited
                        sel.unregister(key.fd)
                        code = self._reap(proc)
                        continue
                    chunk = os.read(key.fd, 65536)
                    is_stderr = key.data
                    if not chunk:
                        sel.unregister(key.fd)
                        if partial[is_stderr]:
                            self._emit(partial[is_stderr], is_stderr)
                        continue
                    *lines, partial[is_stderr] = (partial[is_stderr] + chunk).split(b"\n")
                    for line in lines:
                        self._emit(line, is_stderr)
                    if len(partial[is_stderr]) > MAX_PARTIAL_LINE:  # no newline in sight: ship what we have
                        self._emit(partial[is_stderr], is_stderr)
                        partial[is_stderr] = b""
                if pidfd is None and code is None:
                    code = self._reap(proc, os.WNOHANG)
                if code is None and deadline is not None and self._stop_reason is None and time.monotonic() >= deadline:
                    self.stop(f"timed out after {self.job.timeout_s:g} s", JobStatus.FAILED)
        finally:
            sel.close()
            if pidfd is not None:
                os.close(pidfd)
            for pipe in (proc.stdout, proc.stderr):
                pipe.close()
        return code

    def _reap(self, proc: subprocess.Popen[bytes], flags: int = 0) -> int | None:
        """wait4 the runbook process: its exit code and rusage (None with WNOHANG while it runs)."""
        try:
            pid, status, rusage = os.wait4(proc.pid, flags)
        except ChildProcessError:  # reaped elsewhere (never should be): no rusage to report
            log.error("job %s: the runbook process was reaped by someone else", self.job.job_id)
            pid, status, rusage = proc.pid, None, None
        if pid == 0:
            return None
        code = os.waitstatus_to_exitcode(status) if status is not None else (proc.returncode or 255)
        proc.returncode = code
        self._rusage = rusage
        self._reaped.set()
        # Children left in the group would hold the pipes open; the job is over for them too.
        self._signal_group(proc, signal.SIGKILL)
        return code

    # -- the job ---------------------------------------------------------------
    def run(self) -> JobStatus:
        lease = threading.Thread(target=self._keep_lease, name=f"lease-{self.job.job_id[:8]}", daemon=True)
        lease.start()
        assets_token = self.opts.assets.open(self.job.job_id) if self.opts.assets else None
        started = time.monotonic()
        try:
            with observe.job_span(self.opts.tracer, self.job, self.opts.worker_name) as span:
                status, reason, code = self._execute(assets_token)
                observe.finish_span(span, status, reason)
        except Exception as exc:  # an agent bug must still end the job visibly
            log.exception("job %s: agent error", self.job.job_id)
            status, reason, code = JobStatus.FAILED, f"agent error on {self.opts.worker_name}: {exc}", None
        finally:
            self._exited = True
            if self.opts.assets and assets_token:
                self.opts.assets.close(assets_token)
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
            leftovers.remove_record(self.opts.work_root, self.job.job_id)
        if self.opts.job_metrics is not None:
            self.opts.job_metrics.record(self.job, status, time.monotonic() - started, self._resources)
        if not self._lease_lost.is_set():
            self.events.status(status, reason, code, self._resources)
        delivered = self.events.close()
        self._done.set()
        if not delivered and not self._lease_lost.is_set():
            log.error("job %s: final status %s could not be delivered", self.job.job_id, status)
        return status

    def _prepare(self) -> tuple[str, RunAsUser | None, str | None]:
        """Verify the signature, check the Python, resolve RunAs: (content, user, python) or RuntimeRefusal."""
        content = self.job.content
        if self.opts.trusted_keys is not None:
            content = verify_clearsigned(content, self.opts.trusted_keys, self.job.runbook)
        else:  # signatures not enforced here: a signed runbook still runs, as its signed text
            content = unwrap_clearsigned(content)
        if self.job.runbook_type == RunbookType.PYTHON3:
            check_python3(content, self.job.runbook)
        user = self.opts.runbook_user  # a root agent's default unprivileged user (None: the agent's own)
        if self.job.run_as:
            user = resolve_run_as(self.job.run_as, self.job.run_as_credential, self.opts.worker_name)
        python = None
        if self.job.runbook_type == RunbookType.PYTHON3:
            if self.job.runtime:
                python = self._runtime_python(user)
            else:
                python = python_for(user, self.opts.python, self.opts.python_explicit)
        return content, user, python

    def _runtime_python(self, user: RunAsUser | None) -> str:
        """The job's runtime environment's python, built on first use (its output in the Verbose stream)."""
        spec = self.job.runtime
        assert spec is not None
        if self.opts.runtimes is None:
            raise RuntimeRefusal(f"runtime environment {spec.name}: this worker does not build runtime environments")
        python = self.opts.runtimes.ensure(spec, lambda line: self.events.record(StreamType.VERBOSE, line))
        if user is not None and not user.can_execute(python):
            raise RuntimeRefusal(
                f"runtime environment {spec.name}: user {user.name!r} cannot execute {python} "
                "(put the runtimes in a directory it can reach: outpost worker run --runtime-dir)"
            )
        return python

    def _make_workdir(self, user: RunAsUser | None) -> Path:
        self.opts.work_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if user is None:
            workdir = self.opts.work_root / self.job.job_id
            # A directory left by a crashed run of this same job (re-queued after worker loss) is stale:
            # start from an empty one.
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(mode=0o700)
        else:  # the agent's state directory is root-only: a RunAs job works in a private temp dir of its own
            workdir = Path(tempfile.mkdtemp(prefix=f"{leftovers.TEMP_PREFIX}{self.job.job_id[:8]}-"))
        self._workdir = workdir
        return workdir

    def _guard(self, proc: subprocess.Popen[bytes], workdir: Path) -> None:
        """Make the runbook findable and killable should this agent die (agent/watchdog.py, leftovers.py)."""
        if self.opts.watchdog is not None:
            self.opts.watchdog.watch(proc.pid)  # start_new_session: its process group id is its pid
        record = JobRecord(
            self.job.job_id, self.job.activation, proc.pid, proc.pid, leftovers.start_ticks(proc.pid), str(workdir)
        )
        try:
            leftovers.write_record(self.opts.work_root, record)
        except OSError as exc:  # a full disk must not fail a job that is already running
            log.warning("job %s: cannot write its process record: %s", self.job.job_id, exc)

    def _execute(self, assets_token: str | None) -> tuple[JobStatus, str | None, int | None]:
        try:
            content, user, python = self._prepare()
        except RuntimeRefusal as exc:
            log.warning("job %s: not started: %s", self.job.job_id, exc)
            return JobStatus.FAILED, str(exc), None
        try:
            confinement = self._confine(user)
        except RuntimeRefusal as exc:
            log.warning("job %s: not started: %s", self.job.job_id, exc)
            return JobStatus.FAILED, str(exc), None
        try:
            return self._start_and_supervise(assets_token, content, user, python, confinement)
        finally:
            confinement.close()

    def _confine(self, user: RunAsUser | None) -> Confinement:
        enforcement = self.opts.enforcement
        if enforcement is None:
            return Enforcement("rlimit", "no enforcement configured").confine(self.job.job_id, self.job.limits, None)
        return enforcement.confine(self.job.job_id, self.job.limits, user.uid if user else None)

    def _start_and_supervise(
        self,
        assets_token: str | None,
        content: str,
        user: RunAsUser | None,
        python: str | None,
        confinement: Confinement,
    ) -> tuple[JobStatus, str | None, int | None]:
        workdir = self._make_workdir(user)
        script = workdir / f"{self.job.runbook}{SUFFIX[self.job.runbook_type]}"
        script.write_text(content, encoding="utf-8")
        sdk = workdir / ".automation"
        sdk.mkdir(mode=0o700)
        shutil.copyfile(SDK_FILE, sdk / SDK_FILE.name)
        env = runbook_environment()  # never the agent's secrets (OUTPOST_*) or its virtualenv
        env.update(
            AUTOMATION_JOB_ID=self.job.job_id,
            # With the job id, tells this run's processes from a later activation's on another worker
            # of the same machine (agent/leftovers.py kills only this run's).
            AUTOMATION_JOB_ACTIVATION=str(self.job.activation),
            AUTOMATION_RUNBOOK_NAME=self.job.runbook,
            PYTHONUNBUFFERED="1",
            PYTHONIOENCODING="utf-8",
            PYTHONUTF8="1",
            PYTHONPATH=runbook_pythonpath(sdk, os.environ.get("PYTHONPATH")),
        )
        if self.opts.assets is not None and assets_token:
            env.update(AUTOMATION_ASSETS_URL=self.opts.assets.url, AUTOMATION_ASSETS_TOKEN=assets_token)
        traceparent = observe.current_traceparent(self.job.traceparent)
        if traceparent:
            env["TRACEPARENT"] = traceparent
        switch: dict[str, object] = {}
        if user is not None:
            env.update(user.env())
            for path in (workdir, script, sdk, sdk / SDK_FILE.name):
                os.chown(path, user.uid, user.gid)
            switch = {"user": user.uid, "group": user.gid, "extra_groups": user.groups}
        try:
            command = command_for(self.job, script, python or self.opts.python)
            if not os.access(command[0], os.X_OK):  # say so here: behind the limit wrappers it would be an exit 127
                raise FileNotFoundError(f"{command[0]} is not an executable file")
            if user is None and self.opts.credential_mask is not None:  # innermost: limits still apply to it
                command = self.opts.credential_mask.wrap(command, workdir)
            if user is not None and can_switch_users():
                # setpriv switches in the exec it makes anyway: Popen(user=) would force a fork() of the agent
                # and after the job joined its cgroup as root (cgroup v2 lets only root move it there)
                argv, switch = confinement.wrap(die_with_parent(command, user.setpriv_args())), {}
            else:
                argv = confinement.wrap(die_with_parent(command))
            started = time.monotonic()
            self._proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                **switch,  # type: ignore[arg-type]
            )
        except OSError as exc:
            return JobStatus.FAILED, f"could not start the runbook on {self.opts.worker_name}: {exc}", None
        self._guard(self._proc, workdir)
        self.events.started()
        if self._stop_reason is not None:  # a stop arrived while starting
            self._terminate(self._proc, 0)
        timeout = self.job.timeout_s
        try:
            code = self._supervise(self._proc, None if timeout is None else time.monotonic() + timeout)
        finally:
            self._exited = True
            if self.opts.watchdog is not None:
                self.opts.watchdog.unwatch(self._proc.pid)
        usage = confinement.account(
            resources.from_rusage(self._rusage, time.monotonic() - started, code)
            if self._rusage is not None
            else JobResources(wall_s=time.monotonic() - started, cpu_user_s=0, cpu_system_s=0, peak_rss_bytes=0)
        )
        self._resources = usage
        if self._stop_reason is not None:
            return self._stop_status, self._stop_reason, code
        if code == 0:
            return JobStatus.COMPLETED, None, 0
        return JobStatus.FAILED, resources.failure_reason(usage, code, confinement.hit_process_limit()), code
