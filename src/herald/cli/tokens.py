"""`herald tokens create|list|revoke`: API bearer tokens, shown once and stored hashed."""

from __future__ import annotations

from typing import Annotated

import typer

from herald.cli.common import OutputOpt, engine, translated
from herald.cli.output import Output, console, err_console, show

tokens_app = typer.Typer(help="API tokens (read or write scope).", no_args_is_help=True)


@tokens_app.command("create")
def create(
    scope: Annotated[str, typer.Option("--scope", help="read, or write (which can read too).")],
    name: Annotated[str | None, typer.Option("--name", help="A unique name to recognise it by.")] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Stop working after this long: 30d, 12h, 90m, 2w.")
    ] = None,
) -> None:
    """Create a token and print it: it is shown this once, only its hash is kept."""
    from herald.commands import tokens
    from herald.store.tokens import expiry

    with translated():
        token, label = tokens.create(engine(), scope, name, expires_in)
    expires_at = expiry(token)
    # The token alone on stdout, so that `TOKEN=$(herald tokens create ...)` works.
    typer.echo(token)
    until = f"; it expires at {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at is not None else ""
    _note(f"{scope} token {label!r} created{until}; it is not shown again. Use: Authorization: Bearer TOKEN")


def _note(text: str) -> None:
    err_console.print(f"[dim]{text}[/]", highlight=False)


@tokens_app.command("list")
def list_tokens(output: OutputOpt = Output.table) -> None:
    """Tokens by name and scope (never the tokens themselves)."""
    from herald.commands import tokens

    show(tokens.list_all(engine()), output, ["id", "name", "scope", "created_at"], "Tokens")


@tokens_app.command("revoke")
def revoke(
    name: Annotated[str | None, typer.Argument(help="The token's name.")] = None,
    token_id: Annotated[int | None, typer.Option("--id", help="The token's id (herald tokens list).")] = None,
) -> None:
    """Delete one token, by name or --id; callers using it get 401 at once."""
    from herald.commands import tokens

    with translated():
        revoked = tokens.revoke(engine(), name, token_id)
    console.print(f"Revoked the token named {revoked!r}.", highlight=False)
