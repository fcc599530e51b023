"""The `outpost` command: a thin root that mounts each part's Typer app.

Sub-apps are imported here, so their modules must keep heavy imports (FastAPI,
SQLAlchemy, DuckDB) inside functions: `outpost worker run` stays small.
"""

from __future__ import annotations

import importlib
import sys

import typer

from outpost import __version__

# (command name, "module:attribute") of each Typer sub-app, or of a single command function.
SUBAPPS: list[tuple[str, str]] = [
    ("worker", "agent.cli:app"),
    ("runbook", "outpost.commands.runbooks:app"),
    ("job", "outpost.commands.jobs:app"),
    ("group", "outpost.commands.groups:app"),
    ("keys", "outpost.commands.keys:app"),
    ("alerts", "outpost.commands.alerts:app"),
    ("asset", "outpost.commands.assets:app"),
    ("schedule", "outpost.commands.schedules:app"),
    ("webhook", "outpost.commands.webhooks:app"),
    ("token", "outpost.commands.tokens:app"),
]
COMMANDS: list[tuple[str, str]] = [
    ("server", "outpost.commands.server:server"),
    ("diagnose", "diagnostics.cli:diagnose"),
    ("query", "outpost.commands.query:query"),
    ("collector", "telemetry.standalone:collector"),
]


def _load(ref: str) -> object:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def build(only: str | None = None) -> typer.Typer:
    """The CLI tree; with `only`, just that command, so `outpost worker run` imports no server code."""
    app = typer.Typer(
        name="outpost",
        help="Outpost: run automation on your own machines and see what they do.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for name, ref in SUBAPPS:
        if only in (None, name):
            app.add_typer(_load(ref), name=name)  # type: ignore[arg-type]
    for name, ref in COMMANDS:
        if only in (None, name):
            app.command(name)(_load(ref))  # type: ignore[arg-type]
    return app


def _version(value: bool) -> None:
    if value:
        typer.echo(f"outpost {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Outpost command line."""


def main() -> None:
    first = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    known = {name for name, _ in SUBAPPS + COMMANDS}
    build(first if first in known else None)()
