"""`/api/v1/docs`: Swagger UI for the API, served from the installed package, never a CDN.

FastAPI's own docs page loads Swagger UI from a CDN (blank offline, and third-party
code on the origin whose localStorage holds the UI's token) and starts it with an
inline script, which the content security policy blocks. Here the bundle comes from
`fastapi-offline` (Swagger UI 5, which reads the OpenAPI 3.1 that FastAPI writes)
and the start-up script is a file of Herald's UI.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Herald API</title>
  <link rel="stylesheet" href="/api/v1/docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="/api/v1/docs/static/favicon.png">
</head>
<body>
  <div id="swagger-ui" data-openapi="/api/v1/openapi.json"></div>
  <script src="/api/v1/docs/static/swagger-ui-bundle.js"></script>
  <script src="/ui/docs.js"></script>
</body>
</html>
"""


def mount(app: FastAPI) -> None:
    """Serve the docs page at `/api/v1/docs` and Swagger UI's files under `/api/v1/docs/static/`."""
    from pathlib import Path

    import fastapi_offline

    swagger_ui = Path(fastapi_offline.__file__).parent / "static"

    @app.get("/api/v1/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-cache"})

    app.mount("/api/v1/docs/static", StaticFiles(directory=swagger_ui), name="swagger-ui")
