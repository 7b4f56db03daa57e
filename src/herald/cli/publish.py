"""`herald publish URL BODY`: send a message to any queue Herald can watch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from herald.cli.common import engine, settings
from herald.cli.output import console, fail


def publish(
    url: Annotated[str, typer.Argument(help="Queue URL, e.g. local://orders or redis://127.0.0.1:6379/0?stream=s")],
    body: Annotated[str, typer.Argument(help="The message body as text, or @FILE to send a file's bytes.")],
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="KEY=VALUE, repeatable.")] = None,
    count: Annotated[int, typer.Option(min=1, help="Send the body this many times.")] = 1,
) -> None:
    """Send a message to any queue Herald can watch."""
    from herald.sdk.masking import mask_text, mask_url, url_secrets
    from herald.triggers.registry import UnknownSchemeError, scheme_of

    # every line this command prints goes through `masked`: the URL's password and
    # sensitive options never show, even inside a broker client's error message
    secrets = url_secrets(url)

    def masked(text: str) -> str:
        return mask_text(text, secrets)

    try:
        scheme_of(url)
    except UnknownSchemeError as exc:
        fail(masked(exc.message), masked(exc.hint) if exc.hint else None)
    if body.startswith("@"):
        path = Path(body[1:])
        if not path.is_file():
            fail(f"no file {str(path)!r} to send", "use @PATH to an existing file, or pass the body as text")
        data = path.read_bytes()
    else:
        data = body.encode("utf-8")
    headers: dict[str, str] = {}
    for item in header or []:
        if "=" not in item:
            fail(f"header {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        headers[key] = value
    if url.startswith("local:"):
        from herald.publishing import local_publish
        from herald.store.watchers import local_queue_is_watched
        from herald.triggers.local import queue_name

        db = engine()  # the database the queue lives in must exist: publishing never creates one
        try:
            local_publish(queue_name(url), [data] * count, headers, settings=settings())
        except ValueError as exc:
            fail(masked(str(exc)))
        if not local_queue_is_watched(db, queue_name(url)):
            console.print(
                f"Warning: no active watcher consumes {url}: the message waits in the queue until a DAG "
                "with MessageQueueTrigger('local://...') of that name is loaded (herald watchers list shows them).",
                style="yellow",
                highlight=False,
                markup=False,
            )
    else:
        from herald.publishing import publish as send

        for _ in range(count):
            try:
                send(url, data, headers)
            except ImportError as exc:
                fail(masked(str(exc)))
            except Exception as exc:  # any broker client's error: say it, no traceback
                fail(masked(f"could not publish to {mask_url(url)}: {type(exc).__name__}: {exc}"), code=1)
    console.print(f"Published {count} message(s) to {mask_url(url)}.", highlight=False)
