"""`outpost runtime ...`: named runtime environments (a Python version and packages) for Python runbooks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from outpost.commands.client import request
from outpost.commands.common import (
    CaFileOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    admin_client,
    done,
    fail,
    name_path,
    print_fields,
    print_json,
    print_table,
)

app = typer.Typer(
    help="Runtime environments: a Python version and packages that Python runbooks run in.", no_args_is_help=True
)


def _requirements_file(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")


@app.command("create")
def create(
    name: str,
    python: Annotated[
        str | None, typer.Option("--python", help="Python version, e.g. 3.11 (default: the worker's python3).")
    ] = None,
    package: Annotated[
        list[str] | None, typer.Option("--package", help="A requirement such as requests==2.32.3 (repeatable).")
    ] = None,
    requirements: Annotated[
        Path | None, typer.Option("--requirements", help="A requirements.txt (requirements only, no pip options).")
    ] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a runtime environment, or replace one's package set (workers build it on first use)."""
    body = {
        "python": python,
        "packages": package or [],
        "requirements": _requirements_file(requirements),
        "description": description,
    }
    with admin_client(url, token, ca_file) as client:
        response = request(client, "PUT", f"/api/v1/runtimes/{name_path(name, 'runtime environment')}", json=body)
    view = response.json()
    verb = "created" if response.status_code == 201 else "updated"
    done(as_json, view, f"runtime environment {name} {verb}: {len(view['requirements'])} requirement(s)")


@app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False) -> None:
    """List runtime environments."""
    with admin_client(url, token, ca_file) as client:
        rows = request(client, "GET", "/api/v1/runtimes").json()
    if as_json:
        print_json(rows)
        return
    shown = [{**r, "python": r["python"] or "worker's", "requirements": len(r["requirements"])} for r in rows]
    print_table(shown, ["name", "python", "requirements", "updated_at"])


@app.command("show")
def show(
    name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Show a runtime environment and its requirements."""
    with admin_client(url, token, ca_file) as client:
        env = request(client, "GET", f"/api/v1/runtimes/{name_path(name, 'runtime environment')}").json()
    if as_json:
        print_json(env)
        return
    print_fields({**env, "requirements": ", ".join(env["requirements"]) or "none"})


@app.command("delete")
def delete(name: str, url: UrlOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None) -> None:
    """Delete a runtime environment no runbook uses."""
    with admin_client(url, token, ca_file) as client:
        request(client, "DELETE", f"/api/v1/runtimes/{name_path(name, 'runtime environment')}")
    done(False, {}, f"runtime environment {name} deleted")


@app.command("use")
def use(
    runbook: str,
    environment: Annotated[str | None, typer.Argument(help="The environment; omit with --clear.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Run the runbook with the worker's python3 again.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a Python runbook run in a runtime environment (a job can still name another: job start --runtime)."""
    if clear == (environment is not None):
        fail("pass an environment name, or --clear", 2)
    with admin_client(url, token, ca_file) as client:
        answer = request(
            client,
            "PUT",
            f"/api/v1/runbooks/{name_path(runbook, 'runbook')}/runtime",
            json={"environment": environment},
        ).json()
    where = environment or "the worker's python3"
    done(as_json, answer, f"runbook {runbook}: runs in {where}")
