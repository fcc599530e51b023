"""`outpost job ...`: start jobs, follow their output, inspect and stop them."""

from __future__ import annotations

import sys
import uuid
from typing import Annotated, Any

import typer

from outpost.commands.client import Client, request
from outpost.commands.common import (
    CaFileOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    admin_client,
    console,
    err_console,
    fail,
    id_path,
    name_path,
    parse_params,
    print_fields,
    print_json,
    print_table,
)
from outpost.commands.resources import resource_fields
from outpost.commands.waiting import QUEUED_NOTICE_S, QueuedNotice
from outpost.contract import FINAL_STATUSES, JobStatus, StreamType
from outpost.names import params_problem

app = typer.Typer(help="Start, follow, inspect and stop jobs.", no_args_is_help=True)

JobIdArg = Annotated[str, typer.Argument(help="A job id, or a unique prefix of one (as git takes commits).")]

COLUMNS = ["id", "runbook", "run_on", "status", "worker", "created_at", "ended_at"]
NARROW_COLUMNS = ["id", "runbook", "status", "created_at"]
WIDE_TERMINAL = 110


# How a --wait shows each stream: Output on stdout as is; the others on stderr with the prefix a
# runbook prints to produce them (agent/classify.py), so ERROR:, WARNING: and PROGRESS: read alike.
SHOWN_PREFIX = {StreamType.ERROR: "ERROR: ", StreamType.WARNING: "WARNING: ", StreamType.PROGRESS: "PROGRESS: "}


def _follow(client: Client, job_id: str, run_on: str, as_json: bool) -> tuple[dict[str, Any], list[str]]:
    """Print records as they arrive; with --json, Output goes to stderr too (stdout carries one document).

    Returns the final job and its Output lines. Stops at the first empty page read after the job
    was already seen final, so no line committed with the final status is missed.
    """
    after = -1
    seen_final = False
    output: list[str] = []
    queued = QueuedNotice(client, run_on)
    while True:
        page = request(
            client,
            "GET",
            f"/api/v1/jobs/{id_path(job_id)}/streams",
            params={"after": after, "wait": QUEUED_NOTICE_S},
            timeout=QUEUED_NOTICE_S + 15,
        ).json()
        for rec in page["records"]:
            after = rec["seq"]
            kind = rec["type"]
            if kind == StreamType.OUTPUT:
                output.append(rec["text"])
                (sys.stderr if as_json else sys.stdout).write(rec["text"] + "\n")
            elif kind in SHOWN_PREFIX:
                sys.stderr.write(f"{SHOWN_PREFIX[StreamType(kind)]}{rec['text']}\n")
        sys.stdout.flush()
        sys.stderr.flush()
        job = page["job"]
        if job["status"] in FINAL_STATUSES:
            if seen_final and not page["records"]:
                return job, output
            seen_final = True
        queued.tick(job)


@app.command("start")
def start(
    runbook: str,
    run_on: Annotated[str, typer.Option("--run-on", help="The worker group to run on.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="k=v for a named parameter, VALUE for the next positional one (repeatable)."
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0.1, help="Fail the job after this many seconds.")
    ] = None,
    runtime: Annotated[
        str | None, typer.Option("--runtime", help="Run in this runtime environment instead of the runbook's.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Stream the output live; exit 0 only if it Completed.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a job of a published runbook on a worker group; prints the job id."""
    name_path(runbook, "runbook")
    name_path(run_on, "group")
    params = parse_params(param or [])
    too_big = params_problem(params)
    if too_big:
        fail(too_big, 2)
    body = {"runbook": runbook, "run_on": run_on, "params": params, "timeout_s": timeout}
    if runtime:
        body["runtime_environment"] = runtime
    with admin_client(url, token, ca_file) as client:
        # One key per invocation, reused by every retry: a lost answer never starts a second job.
        job = request(client, "POST", "/api/v1/jobs", json=body, idempotency_key=str(uuid.uuid4())).json()
        if not wait:
            print_json(job) if as_json else typer.echo(job["id"])
            return
        err_console.print(f"job {job['id']} queued on {run_on}", highlight=False)
        try:
            final, output_lines = _follow(client, job["id"], run_on, as_json)
        except KeyboardInterrupt:
            err_console.print(f"stopped following; the job goes on: outpost job show {job['id']}")
            raise typer.Exit(130) from None
    if as_json:
        print_json({**final, "output": output_lines})
    if final["status"] != JobStatus.COMPLETED:
        reason = f": {final['status_reason']}" if final.get("status_reason") else ""
        fail(f"job {final['id']} ended {final['status']}{reason}")


@app.command("show")
def show(
    job_id: JobIdArg,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a job: status, worker, timestamps."""
    with admin_client(url, token, ca_file) as client:
        job = request(client, "GET", job_path(client, job_id)).json()
    if as_json:
        print_json(job)
        return
    print_fields(
        job,
        (
            "id",
            "runbook",
            "runbook_version",
            "run_on",
            "status",
            "status_reason",
            "worker",
            "params",
            "timeout_s",
            "activations",
            "exit_code",
            "created_at",
            "started_at",
            "ended_at",
        ),
    )
    extra = resource_fields(job.get("resources"))
    if job.get("runtime_environment"):
        extra = {"runtime": job["runtime_environment"], **extra}
    if extra:
        print_fields(extra)


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    runbook: Annotated[str | None, typer.Option(help="Only jobs of this runbook.")] = None,
    group: Annotated[str | None, typer.Option(help="Only jobs run on this group.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List recent jobs, newest first."""
    params = {k: v for k, v in {"status": status, "runbook": runbook, "group": group, "limit": limit}.items() if v}
    with admin_client(url, token, ca_file) as client:
        rows = request(client, "GET", "/api/v1/jobs", params=params).json()
    if as_json:
        print_json(rows)
        return
    # Whole ids take 36 columns: a narrow terminal gets the columns that fit beside them.
    print_table(rows, COLUMNS if console.width >= WIDE_TERMINAL else NARROW_COLUMNS)


PREFIX_SEARCH_LIMIT = 1000  # the most /api/v1/jobs lists at once


def job_path(client: Client, given: str) -> str:
    """/api/v1/jobs/ID for a whole job id or, as git takes commits, a unique prefix of one (8+ hex digits
    are usually enough). A prefix is looked up among the newest PREFIX_SEARCH_LIMIT jobs."""
    value = given.strip().lower()
    if len(value) < 36 and value and all(ch in "0123456789abcdef-" for ch in value):
        rows = request(client, "GET", "/api/v1/jobs", params={"limit": PREFIX_SEARCH_LIMIT}).json()
        matches = [row["id"] for row in rows if row["id"].startswith(value)]
        if not matches:
            fail(f"no job id starts with {given!r} (among the newest {PREFIX_SEARCH_LIMIT} jobs)")
        if len(matches) > 1:
            fail(f"job id prefix {given!r} is ambiguous: {', '.join(matches[:5])}{', ...' if len(matches) > 5 else ''}")
        value = matches[0]
    return f"/api/v1/jobs/{id_path(value)}"


def _all_records(client: Client, job_id: str, stream: str | None) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    after = -1
    path = f"{job_path(client, job_id)}/streams"
    while True:
        params: dict[str, Any] = {"after": after, "limit": 10000}
        if stream:
            params["stream"] = stream
        page = request(client, "GET", path, params=params).json()["records"]
        if not page:
            return records
        records.extend(page)
        after = page[-1]["seq"]


@app.command("output")
def output(
    job_id: JobIdArg,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the job's Output stream."""
    with admin_client(url, token, ca_file) as client:
        records = _all_records(client, job_id, StreamType.OUTPUT.value)
    if as_json:
        print_json([r["text"] for r in records])
    else:
        for rec in records:
            typer.echo(rec["text"])


@app.command("streams")
def streams(
    job_id: JobIdArg,
    stream: Annotated[StreamType | None, typer.Option("--stream", help="Only this stream type.")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List all stream records of a job (type, time, text) in order."""
    with admin_client(url, token, ca_file) as client:
        records = _all_records(client, job_id, stream.value if stream else None)
    if as_json:
        print_json([{"type": r["type"], "time": r["time"], "text": r["text"]} for r in records])
    else:
        print_table(records, ["time", "type", "text"])


@app.command("stop")
def stop(
    job_id: JobIdArg,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop a job: queued jobs stop at once, running ones get SIGTERM then SIGKILL."""
    with admin_client(url, token, ca_file) as client:
        job = request(client, "POST", f"{job_path(client, job_id)}/stop").json()
    print_json(job) if as_json else console.print(f"job {job_id}: {job['status']}", highlight=False)
