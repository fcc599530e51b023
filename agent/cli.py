"""`outpost worker ...`: register this machine, run the agent, remove workers."""

from __future__ import annotations

import logging
import platform
import signal
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from agent.hostname import machine_hostname
from outpost import __version__
from outpost.commands import client as cli_http
from outpost.commands.common import (
    CaFileOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    admin_client,
    console,
    done,
    fail,
    name_path,
    print_json,
    print_table,
)
from outpost.commands.waiting import LIVE_WITHIN_S, ago, seen_within
from outpost.contract import AGENT_REGISTER, AGENT_SELF
from outpost.http_policy import ApiError
from outpost.settings import ENV_STATE_DIR, REQUEST_TIMEOUT_S, default_state_dir
from outpost.state import AgentState, Registration, StateError

app = typer.Typer(help="Register this machine as a worker, run the agent, manage workers.", no_args_is_help=True)

StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar=ENV_STATE_DIR,
        help="Agent state (default: /var/lib/outpost as root, else ~/.local/state/outpost).",
        show_default=False,
    ),
]


def _state(state_dir: Path | None) -> AgentState:
    return AgentState(state_dir or default_state_dir())


def _os_facts() -> dict[str, str]:
    try:
        info = platform.freedesktop_os_release()
    except OSError:
        info = {}
    return {
        "os_type": platform.system() or "Linux",
        "os_name": info.get("PRETTY_NAME") or info.get("NAME") or platform.platform(),
        "os_version": info.get("VERSION_ID") or platform.release(),
    }


def _server_urls(values: list[str]) -> list[str]:
    """--url given once or repeated, each possibly a comma list: the replicas in order, without repeats."""
    urls: list[str] = []
    for value in values:
        for part in value.split(","):
            url = part.strip().rstrip("/")
            if not url:
                continue
            if not url.startswith(("http://", "https://")):
                fail(f"--url {part.strip()!r} is not an http:// or https:// URL")
            if url not in urls:
                urls.append(url)
    if not urls:
        fail("--url needs at least one server URL")
    return urls


@app.command("register")
def register(
    url: Annotated[
        list[str],
        typer.Option(
            "--url",
            help="The Outpost server URL, or a load balancer's. Several replicas: repeat --url or give a "
            "comma list; the agent moves to the next when one is unreachable.",
        ),
    ],
    key: Annotated[
        str,
        typer.Option(
            "--key",
            help="A registration key (printed by `outpost server`).",
            envvar="OUTPOST_REGISTRATION_KEY",
            show_envvar=True,
        ),
    ],
    group: Annotated[str, typer.Option("--group", help="Worker group to join (created if missing).")],
    name: Annotated[str | None, typer.Option("--name", help="Worker name (default: this host's name).")] = None,
    state_dir: StateDirOpt = None,
    ca_file: CaFileOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing registration.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Register this machine into a worker group; stores its identity in the state directory."""
    urls = _server_urls(url)
    state = _state(state_dir)
    if state.is_registered() and not force:
        try:
            current, _ = state.load()
        except StateError as exc:
            fail(f"{exc}; pass --force to overwrite it")
        if current.url.rstrip("/") not in urls:
            fail(f"already registered to {current.url}; deregister first or pass --force")
        fail(
            f"already registered to {current.url} as {current.name!r} in group {current.group!r}; "
            "deregister first or pass --force"
        )
    worker_name = name or socket.gethostname().split(".")[0]
    # httpx (several server URLs, one failover client) and the pydantic messages: only for the commands that use them.
    from agent.failover import FailoverClient
    from outpost.contract import RegisterRequest, RegisterResponse
    from outpost.http import request

    body = RegisterRequest(
        key=key,
        group=group,
        name=worker_name,
        hostname=machine_hostname(),
        agent_version=__version__,
        force=force,
        **_os_facts(),
    )
    try:
        with FailoverClient(urls, ca_file=ca_file, timeout=REQUEST_TIMEOUT_S) as client:
            answer = RegisterResponse.model_validate(
                request(client, "POST", AGENT_REGISTER, json=body.model_dump()).json()
            )
    except ApiError as exc:
        fail(f"registration failed: {exc.message}")
    except OSError as exc:
        fail(f"registration failed: {exc}")
    reg = Registration(
        url=urls[0],
        urls=urls if len(urls) > 1 else None,
        worker_id=answer.worker_id,
        name=answer.name,
        group=answer.group,
        ca_file=str(Path(ca_file).resolve()) if ca_file else None,
        registered_at=datetime.now(UTC).isoformat(),
    )
    try:
        state.save(reg, answer.credential)
    except OSError as exc:
        fail(f"registered, but cannot write the state directory {state.dir}: {exc}")
    if as_json:
        print_json(
            {
                "worker_id": reg.worker_id,
                "name": reg.name,
                "group": reg.group,
                "url": reg.url,
                "urls": reg.server_urls,
                "state_dir": str(state.dir),
            }
        )
    else:
        console.print(
            f"registered worker {reg.name!r} ({reg.worker_id}) in group {reg.group!r} at {', '.join(urls)}; "
            f"state in {state.dir}",
            highlight=False,
        )


@app.command("deregister")
def deregister(
    state_dir: StateDirOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Forget the local registration even if the server cannot be told.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove this worker from its server and forget the local registration."""
    state = _state(state_dir)
    try:
        reg, credential = state.load()
    except StateError as exc:
        fail(str(exc))
    from agent.failover import FailoverClient
    from outpost.http import request

    try:
        with FailoverClient(
            reg.server_urls, token=credential, ca_file=reg.ca_file, timeout=REQUEST_TIMEOUT_S
        ) as client:
            request(client, "DELETE", AGENT_SELF)
    except ApiError as exc:
        if exc.status not in (401, 404) and not force:
            fail(f"could not deregister at {reg.url}: {exc.message}; pass --force to forget it locally anyway")
    state.clear()
    done(
        as_json,
        {"name": reg.name, "group": reg.group, "url": reg.url, "deregistered": True},
        f"worker {reg.name!r} deregistered from {reg.url}",
    )


@app.command("run")
def run(
    state_dir: StateDirOpt = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=256, help="Jobs run at most at once.")
    ] = 1,
    stop_grace: Annotated[
        float,
        typer.Option("--stop-grace", min=0, help="Seconds between SIGTERM and SIGKILL when a job is stopped."),
    ] = 10.0,
    heartbeat_interval: Annotated[
        float, typer.Option("--heartbeat-interval", min=0.1, help="Seconds between heartbeats.")
    ] = 60.0,
    lease_renew: Annotated[
        float, typer.Option("--lease-renew", min=0.1, help="Seconds between lease renewals of a running job.")
    ] = 3.0,
    poll_hold: Annotated[
        float, typer.Option("--poll-hold", min=0, max=28, help="How long the server may hold a poll.")
    ] = 25.0,
    otel: Annotated[bool, typer.Option("--otel/--no-otel", help="Export job spans and metrics over OTLP.")] = True,
    otlp_endpoint: Annotated[
        str | None,
        typer.Option("--otlp-endpoint", help="OTLP/HTTP endpoint for spans and metrics (default: the server)."),
    ] = None,
    metrics_interval: Annotated[
        float, typer.Option("--metrics-interval", min=1, help="Seconds between OTLP metric exports.")
    ] = 60.0,
    diagnose_interval: Annotated[
        float,
        typer.Option("--diagnose-interval", min=0, help="Run `diagnose` and report it this often (s); 0: never."),
    ] = 3600.0,
    poll_interval: Annotated[
        float,
        typer.Option(
            "--poll-interval",
            min=0,
            help="Wait this long between empty polls (0: long-poll only; use with "
            "--poll-hold 0 where a proxy cuts long requests).",
        ),
    ] = 0.0,
    backoff_cap: Annotated[
        float,
        typer.Option("--backoff-cap", min=0.1, help="Longest wait between polls while the server is unreachable."),
    ] = 60.0,
    trusted_keys: Annotated[
        Path | None,
        typer.Option(
            "--trusted-keys",
            envvar="OUTPOST_TRUSTED_KEYS",
            help="Run only runbooks GPG clear-signed by these public keys (a key file or a directory of "
            "*.asc/*.gpg files; default: <state-dir>/trusted-keys when present).",
        ),
    ] = None,
    runbook_user: Annotated[
        str | None,
        typer.Option(
            "--runbook-user",
            help="Run jobs without RunAs as this unprivileged user, so they cannot read the worker's credential "
            "(an agent running as root needs it, or the outpost-runbook user; root itself is refused).",
        ),
    ] = None,
    python: Annotated[
        str | None,
        typer.Option(
            "--python",
            help="The interpreter of Python runbooks (default: the machine's python3, never the agent's own venv).",
        ),
    ] = None,
    limits: Annotated[
        str,
        typer.Option(
            "--limits",
            help="How job limits are enforced: auto (a cgroup per job where writable, else rlimits), "
            "cgroup (fail to start without one) or rlimit.",
        ),
    ] = "auto",
    cgroup_root: Annotated[
        Path | None,
        typer.Option(
            "--cgroup-root",
            envvar="OUTPOST_CGROUP_ROOT",
            help="A cgroup v2 directory delegated to the agent (systemd Delegate=yes gives its unit's): job cgroups "
            "go there, with the controllers it offers (default: the agent's own v2 cgroup where it offers memory, "
            "cpu and pids, else cgroup v1, else rlimits).",
        ),
    ] = None,
    runtime_dir: Annotated[
        Path | None,
        typer.Option(
            "--runtime-dir",
            help="Where runtime environments are built (default: /var/cache/outpost/runtimes for a root agent, "
            "whose runbooks run as another user; else <state-dir>/runtimes).",
        ),
    ] = None,
    pip_index_url: Annotated[
        str | None, typer.Option("--pip-index-url", help="The package index runtime environment builds use.")
    ] = None,
    pip_find_links: Annotated[
        list[str] | None,
        typer.Option("--pip-find-links", help="A wheel directory or page pip looks in (repeatable; air-gapped sites)."),
    ] = None,
    pip_no_index: Annotated[
        bool, typer.Option("--pip-no-index", help="Never ask a package index: only --pip-find-links.")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info (lifecycle events: the default), warning or error.")
    ] = "info",
    log_format: Annotated[
        str, typer.Option("--log-format", help="text, or json: one JSON object per line (for log shippers).")
    ] = "text",
) -> None:
    """Run the agent in the foreground: long-poll, run jobs, stream results."""
    from agent.logs import LOG_FORMATS, setup_logging
    from agent.runtime_envs import PipConfig
    from agent.worker import Agent, AgentOptions

    if log_format not in LOG_FORMATS:
        fail(f"--log-format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail(f"--log-level must be debug, info, warning or error, not {log_level!r}")
    if limits not in ("auto", "cgroup", "rlimit"):
        fail(f"--limits must be auto, cgroup or rlimit, not {limits!r}")
    setup_logging(log_level, log_format)
    try:
        agent = Agent(
            _state(state_dir),
            AgentOptions(
                concurrency=concurrency,
                stop_grace_s=stop_grace,
                lease_renew_s=lease_renew,
                poll_hold_s=poll_hold,
                backoff_cap_s=backoff_cap,
                heartbeat_interval_s=heartbeat_interval,
                poll_interval_s=poll_interval,
                diagnose_interval_s=diagnose_interval,
                otel=otel,
                otlp_endpoint=otlp_endpoint,
                metrics_interval_s=metrics_interval,
                trusted_keys=trusted_keys,
                runbook_user=runbook_user,
                python=python,
                limits=limits,
                cgroup_root=cgroup_root.absolute() if cgroup_root else None,
                runtime_dir=runtime_dir.absolute() if runtime_dir else None,
                pip=PipConfig(index_url=pip_index_url, find_links=pip_find_links or [], no_index=pip_no_index),
            ),
        )
    except (StateError, OSError) as exc:
        fail(str(exc))

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger("outpost.agent").info("signal %d: finishing up", signum)
        agent.interrupt()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    code = agent.run()
    if code == 3:
        fail(
            "the server rejected this worker's credential (removed or re-registered elsewhere); "
            "run `outpost worker register --force`",
            3,
        )
    raise typer.Exit(code)


@app.command("status")
def status(state_dir: StateDirOpt = None, as_json: JsonOpt = False) -> None:
    """Show this machine's registration and the agent's last activity (never the credential)."""
    state = _state(state_dir)
    try:
        reg, _ = state.load()
    except StateError as exc:
        fail(str(exc))
    data = {
        "url": reg.url,
        "urls": reg.server_urls,
        "worker_id": reg.worker_id,
        "name": reg.name,
        "group": reg.group,
        "ca_file": reg.ca_file,
        "registered_at": reg.registered_at,
        "state_dir": str(state.dir),
        **state.read_status(),
    }
    if as_json:
        print_json(data)
    else:
        for k, v in data.items():
            console.print(f"[bold]{k:>18}[/] {'' if v is None else v}", highlight=False)


@app.command("list")
def list_(
    group: Annotated[str | None, typer.Option(help="Only this group.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List registered workers (admin)."""
    with admin_client(url, token, ca_file) as client:
        rows = cli_http.request(client, "GET", "/api/v1/workers", params={"group": group} if group else None).json()
    for row in rows:  # up: polled or heartbeated within LIVE_WITHIN_S (what `job start --wait` also goes by)
        row["up"] = seen_within(row.get("last_seen_at"), LIVE_WITHIN_S)
    if as_json:
        print_json(rows)
    else:
        for row in rows:
            row["state"] = "up" if row["up"] else "down"
            row["last_seen"] = ago(row.get("last_seen_at"))
        print_table(rows, ["name", "group", "state", "hostname", "os", "agent_version", "last_seen"])


@app.command("remove")
def remove(
    name: str,
    group: Annotated[str | None, typer.Option(help="The worker's group, when the name is not unique.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a (stale) worker by name (admin); its credential stops working at once."""
    with admin_client(url, token, ca_file) as client:
        path = f"/api/v1/workers/{name_path(name, 'worker')}"
        data = cli_http.request(client, "DELETE", path, params={"group": group} if group else None).json()
    done(as_json, {**data, "removed": True}, f"worker {data['name']!r} removed from group {data['group']!r}")
