"""`outpost --help` and `--version` import no sub-app; the root help still says what every command does."""

from __future__ import annotations

import inspect
import subprocess
import sys

import typer

from outpost import __version__, cli
from tests.helpers.procs import OUTPOST


def real_summary(ref: str) -> str:
    target = cli._load(ref)
    if isinstance(target, typer.Typer):
        return str(target.info.help)
    return inspect.getdoc(target).split("\n\n")[0]  # type: ignore[union-attr]


def test_root_help_summaries_are_the_commands_own() -> None:
    refs = dict(cli.SUBAPPS + cli.COMMANDS)
    assert set(cli.SUMMARIES) == set(refs)
    for name, ref in refs.items():
        assert cli.SUMMARIES[name] == real_summary(ref), name


def loaded_modules(*args: str) -> set[str]:
    code = f"import sys; sys.argv = ['outpost', *{list(args)!r}]\nfrom outpost.cli import main\ntry:\n    main()\n"
    code += "except SystemExit:\n    pass\nprint('\\n'.join(sys.modules), file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return set(result.stderr.split())


def test_help_and_version_import_no_command_module() -> None:
    for args in (("--help",), ("--version",)):
        modules = loaded_modules(*args)
        heavy = {m for m in modules if m.split(".")[0] in ("fastapi", "httpx", "sqlalchemy", "duckdb", "pydantic")}
        commands = {m for m in modules if m.startswith(("outpost.commands", "agent", "telemetry", "diagnostics"))}
        assert not heavy and not commands, (args, sorted(heavy | commands))


def test_help_lists_every_command_and_version_prints() -> None:
    shown = subprocess.run([*OUTPOST, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    for name in cli.SUMMARIES:
        assert f" {name} " in shown.stdout, name
    version = subprocess.run([*OUTPOST, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"outpost {__version__}"
    job_help = subprocess.run([*OUTPOST, "job", "--help"], capture_output=True, text=True, timeout=60)
    assert "start" in job_help.stdout and "list" in job_help.stdout
