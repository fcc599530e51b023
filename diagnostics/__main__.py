"""`python -m diagnostics`: the diagnose command alone (same function `outpost diagnose` mounts)."""

import typer

from diagnostics.cli import diagnose

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(diagnose)

if __name__ == "__main__":
    app(prog_name="outpost diagnose")
