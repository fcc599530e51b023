"""`outpost keys ...`: the account's registration keys."""

from __future__ import annotations

from typing import Annotated

import typer

from outpost.commands.client import request
from outpost.commands.common import CaFileOpt, JsonOpt, TokenOpt, UrlOpt, admin_client, print_json

app = typer.Typer(help="Regenerate registration keys.", no_args_is_help=True)


@app.command("regenerate")
def regenerate(
    which: Annotated[str, typer.Argument(help="primary or secondary")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace a registration key; the old one stops working at once (registered workers keep theirs)."""
    with admin_client(url, token, ca_file) as client:
        data = request(client, "POST", f"/api/v1/keys/{which}/regenerate").json()
    print_json(data) if as_json else typer.echo(f"registration key ({which}): {data['registration_key']}")
