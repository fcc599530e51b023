"""The `outpost` command: a thin root that mounts each part's Typer app.

Only the command being run is imported (`outpost worker run` loads no server code), and
`outpost --help` / `--version` import none: the root help lists each command with the
summary in SUMMARIES (tests/packaging/test_cli_speed.py keeps it equal to the real help).
Sub-app modules keep heavy imports (FastAPI, SQLAlchemy, DuckDB) inside functions.
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
    ("runtime", "outpost.commands.runtimes:app"),
]
COMMANDS: list[tuple[str, str]] = [
    ("server", "outpost.commands.server:server"),
    ("diagnose", "diagnostics.cli:diagnose"),
    ("query", "outpost.commands.query:query"),
    ("collector", "telemetry.standalone:collector"),
]


# The one-line help of every command, as its module gives it; shown by `outpost --help`.
SUMMARIES: dict[str, str] = {
    "server": "Start the Outpost service: REST API, long-poll dispatch, telemetry.",
    "diagnose": "Check, step by step, why this worker can or cannot reach its server "
    "(exit 0 ok/warn, 1 fail, 2 usage).",
    "query": "Run a KQL query on the collector's tables (Heartbeat, AzureDiagnostics, OTelSpans, ...).",
    "collector": "Run the telemetry collector: what the replicas forward, KQL / Kusto, OTLP, /metrics, KQL alerts.",
    "worker": "Register this machine as a worker, run the agent, manage workers.",
    "runbook": "Create, publish and inspect runbooks.",
    "job": "Start, follow, inspect and stop jobs.",
    "group": "List and delete worker groups.",
    "keys": "Regenerate registration keys.",
    "alerts": "Show built-in alerts; silence workers or groups for maintenance.",
    "asset": "Shared assets that runbooks read with `import automationassets`: variables, credentials, "
    "certificates, connections.",
    "schedule": "Schedules that start runbooks (one-time or recurring, in a time zone).",
    "webhook": "Webhooks: secret URLs that start a runbook (the URL is shown once).",
    "token": "Create, list and revoke named API tokens (roles: reader, operator, author, admin).",
    "runtime": "Runtime environments: a Python version and packages that Python runbooks run in.",
}


def _placeholder() -> None:
    """Never run: main() builds the real command whenever one is named."""


def _load(ref: str) -> object:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def build(only: str | None = None, *, lazy: bool = False) -> typer.Typer:
    """The CLI tree; with `only`, just that command; with `lazy` (the root help), placeholders."""
    app = typer.Typer(
        name="outpost",
        help="Outpost: run automation on your own machines and see what they do.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        # The root help in click's plain layout: typer's rich layout imports rich's markdown, syntax
        # and traceback modules, most of the time `outpost --help` took (bench/cli.py).
        **({"rich_markup_mode": None} if lazy else {}),
    )
    app.callback()(_root)
    if lazy:  # Typer lists plain commands before groups: keep that order
        for name, _ in COMMANDS + SUBAPPS:
            app.command(name, help=SUMMARIES[name], short_help=SUMMARIES[name])(_placeholder)
        return app
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
    if first in known:
        build(first)()
    else:  # `outpost`, `outpost --help`, `--version`, or an unknown command (Typer names it)
        build(lazy=True)()
