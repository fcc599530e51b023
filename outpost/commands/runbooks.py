"""`outpost runbook ...`: author, publish and inspect runbooks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from outpost.commands import limits
from outpost.commands.client import request
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
from outpost.commands.dependents import ForceOpt, note, settle_dependents
from outpost.contract import RunbookType

app = typer.Typer(help="Create, publish and inspect runbooks.", no_args_is_help=True)

COLUMNS = ["name", "type", "state", "published_version", "published_at", "has_draft"]


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")


def _infer_type(file: Path) -> str:
    suffix = {".py": "python3", ".sh": "bash", ".ps1": "pwsh"}.get(file.suffix)
    if suffix is None:
        fail(f"cannot tell the runbook type from {file.name!r}; pass --type python3|bash|pwsh", 2)
    return suffix


def _save_draft(
    name: str,
    file: Path,
    rb_type: str | None,
    description: str | None,
    retry: bool | None,
    url: str | None,
    token: str | None,
    ca_file: str | None,
    as_json: bool,
    publish: bool = False,
) -> None:
    body = {
        "type": rb_type or _infer_type(file),
        "content": _read(file),
        "description": description,
        "retry_on_worker_loss": retry,
    }
    with admin_client(url, token, ca_file) as client:
        view = request(client, "PUT", f"/api/v1/runbooks/{name_path(name, 'runbook')}/draft", json=body).json()
        if publish:
            view = request(client, "POST", f"/api/v1/runbooks/{name_path(name, 'runbook')}/publish").json()
    if as_json:
        print_json(view)
    else:
        console.print(
            f"runbook {name}: draft saved" + (f", published version {view['published_version']}" if publish else ""),
            highlight=False,
        )


TypeOpt = Annotated[
    RunbookType | None, typer.Option("--type", help="python3, bash or pwsh (default: from the suffix).")
]
FileOpt = Annotated[Path, typer.Option("--file", "-f", help="The runbook's source file.", exists=False)]
DescOpt = Annotated[str | None, typer.Option("--description", help="A one-line description.")]
RetryOpt = Annotated[
    bool | None,
    typer.Option(
        "--retry-on-worker-loss/--no-retry-on-worker-loss",
        help="Re-queue a job whose worker dies (Suspended after 3 activations).",
    ),
]


@app.command("create")
def create(
    name: str,
    file: FileOpt,
    rb_type: TypeOpt = None,
    description: DescOpt = None,
    retry: RetryOpt = None,
    publish: Annotated[bool, typer.Option("--publish", help="Publish right away.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a runbook, or replace its draft."""
    _save_draft(
        name,
        file,
        rb_type.value if rb_type else None,
        description,
        retry,
        url,
        token,
        ca_file,
        as_json,
        publish,
    )


@app.command("upload")
def upload(
    name: str,
    file: FileOpt,
    rb_type: TypeOpt = None,
    description: DescOpt = None,
    retry: RetryOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload new content as the runbook's draft (same as create)."""
    _save_draft(name, file, rb_type.value if rb_type else None, description, retry, url, token, ca_file, as_json)


@app.command("publish")
def publish(
    name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Publish the draft: new jobs run this version."""
    with admin_client(url, token, ca_file) as client:
        view = request(client, "POST", f"/api/v1/runbooks/{name_path(name, 'runbook')}/publish").json()
    if as_json:
        print_json(view)
    else:
        console.print(f"runbook {name}: published version {view['published_version']}", highlight=False)


@app.command("show")
def show(
    name: str,
    draft: Annotated[
        bool, typer.Option("--draft", help="Print the draft's content instead of the published one.")
    ] = False,
    content: Annotated[bool, typer.Option("--content", help="Print only the content.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a runbook and its content."""
    with admin_client(url, token, ca_file) as client:
        view = request(client, "GET", f"/api/v1/runbooks/{name_path(name, 'runbook')}").json()
    text = view["draft_content"] if draft else view["published_content"]
    if as_json:
        print_json(view)
    elif content:
        if text is None:
            fail(f"runbook {name} has no {'draft' if draft else 'published version'}")
        typer.echo(text, nl=False)
    else:
        print_table([view], COLUMNS)
        if shown := limits.shown(view.get("limits")):
            typer.echo(f"job limits: {shown} (the stricter of these and the group's apply)")
        if text is not None:
            console.rule("draft" if draft else f"published version {view['published_version']}")
            typer.echo(text)


@app.command("set-limits")
def set_limits(
    name: str,
    memory_mb: limits.MemoryOpt = None,
    cpu_percent: limits.CpuOpt = None,
    max_processes: limits.ProcessesOpt = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every limit of the runbook.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the resource limits of a runbook's jobs; the options given replace all earlier ones.

    They narrow the worker group's: per resource, the stricter of the two applies. Jobs
    created from now on take them; queued ones keep the limits they were created with."""
    given = {"memory_mb": memory_mb, "cpu_percent": cpu_percent, "max_processes": max_processes}
    limits.put("runbook", "runbooks", name, given, clear, (url, token, ca_file), as_json)


@app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False) -> None:
    """List runbooks."""
    with admin_client(url, token, ca_file) as client:
        rows = request(client, "GET", "/api/v1/runbooks").json()
    print_json(rows) if as_json else print_table(rows, COLUMNS)


@app.command("delete")
def delete(
    name: str,
    force: ForceOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a runbook (its jobs' history stays; refused while schedules or webhooks start it)."""
    with admin_client(url, token, ca_file) as client:
        disabled = settle_dependents(client, "runbook", name, "runbook", force)
        request(client, "DELETE", f"/api/v1/runbooks/{name_path(name, 'runbook')}")
    done(as_json, {"name": name, "deleted": True, "disabled": disabled}, f"runbook {name} deleted{note(disabled)}")
