"""ASGI middleware: security headers on every answer, and no NUL in a path or query.

Security headers (`SecurityHeaders`) go on every answer of the API and the UI.

The UI is one page (`/`) loading `/ui/app.js` and `/ui/app.css` from this origin;
it writes `style="..."` attributes into the HTML it builds (bars, graph sizes),
hence `'unsafe-inline'` for styles only. Scripts come only from this origin
(no inline script, no CDN), and no other site may frame the page
(`frame-ancestors 'none'`, `X-Frame-Options: DENY`): the page's localStorage
holds an API token.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: what the UI needs, and nothing more
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


class SecurityHeaders:
    """Add `SECURITY_HEADERS` to every HTTP response (errors and static files too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RefuseNul:
    """Answer 400 to a request whose path or query string holds a NUL character (`%00`).

    No name or value Herald stores can hold one (PostgreSQL refuses it in text), so
    such a request is wrong whatever route it is for; refused here, it never reaches
    a query that would fail with a 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            query = unquote_to_bytes(scope.get("query_string", b"").decode("latin-1"))
            if "\x00" in path or b"\x00" in query:
                from herald.api.errors import error_response

                where = "path" if "\x00" in path else "query string"
                response = error_response(
                    400, f"the {where} holds a NUL character (%00)", "remove it: no name or value can hold one"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
