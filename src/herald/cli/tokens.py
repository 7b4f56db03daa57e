"""`herald tokens create|list|revoke`: API bearer tokens, shown once and stored hashed."""

from __future__ import annotations

from typing import Annotated

import typer

from herald.cli.output import Output, console, err_console, fail, show

tokens_app = typer.Typer(help="API tokens (read or write scope).", no_args_is_help=True)


@tokens_app.command("create")
def create(
    scope: Annotated[str, typer.Option("--scope", help="read, or write (which can read too).")],
    name: Annotated[str | None, typer.Option("--name", help="A name to recognise it by.")] = None,
) -> None:
    """Create a token and print it: it is shown this once, only its hash is kept."""
    from herald.api.tokens import SCOPES, create_token
    from herald.cli.main import _engine

    if scope not in SCOPES:
        fail(f"unknown scope {scope!r}", f"use --scope {' or --scope '.join(SCOPES)}")
    label = name or f"{scope}-token"
    if not label.strip() or len(label) > 200:
        fail("--name must be 1 to 200 characters")
    with _engine().begin() as conn:
        token = create_token(conn, scope, label)
    # The token alone on stdout, so that `TOKEN=$(herald tokens create ...)` works.
    typer.echo(token)
    _note(f"{scope} token {label!r} created; it is not shown again. Use: Authorization: Bearer TOKEN")


def _note(text: str) -> None:
    err_console.print(f"[dim]{text}[/]", highlight=False)


@tokens_app.command("list")
def list_tokens(output: Annotated[Output, typer.Option("--output", "-o")] = Output.table) -> None:
    """Tokens by name and scope (never the tokens themselves)."""
    from herald.api.tokens import list_tokens as rows_of
    from herald.cli.main import _engine

    with _engine().connect() as conn:
        rows = rows_of(conn)
    show(rows, output, ["id", "name", "scope", "created_at"], "Tokens")


@tokens_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Delete every token with this name; callers using it get 401 at once."""
    from herald.api.tokens import revoke as drop
    from herald.cli.main import _engine

    with _engine().begin() as conn:
        n = drop(conn, name)
    if not n:
        fail(f"no token named {name!r}", "list tokens with: herald tokens list")
    console.print(f"Revoked {n} token(s) named {name!r}.", highlight=False)
