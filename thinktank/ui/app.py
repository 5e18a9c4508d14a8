"""The dashboard app: read-only pages over a runs directory, live progress over SSE, the `serve` API-key check.

    app = create_app(UiSettings(runs=Path("runs"), api_key=None))
    uvicorn.run(app, host="127.0.0.1", port=8765)

Authentication is `thinktank serve`'s `ApiKeyAuth` (Bearer, constant-time). A browser cannot send that header on a
page load or from `EventSource`, so `BrowserKey` turns `?key=...` (once; it is then kept in an HttpOnly,
SameSite=Strict cookie) or that cookie into the header before `ApiKeyAuth` sees the request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thinktank.exceptions import ThinktankError
from thinktank.serve.app import ApiKeyAuth
from thinktank.ui import data, pages

STATIC = Path(__file__).parent / "static"
COOKIE = "thinktank_ui_key"


@dataclass(frozen=True)
class UiSettings:
    runs: Path = Path("runs")
    api_key: str | None = None  # None or "": no auth
    poll_s: float = 0.5  # how often a live view re-reads the results DB


def create_app(settings: UiSettings) -> FastAPI:
    root = settings.runs
    app = FastAPI(title="thinktank ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(data.RunGone)
    async def gone(request: Request, exc: data.RunGone) -> HTMLResponse:
        return HTMLResponse(pages.message("not found", str(exc)), status_code=404)

    @app.exception_handler(ThinktankError)
    async def unreadable(request: Request, exc: ThinktankError) -> HTMLResponse:
        return HTMLResponse(pages.message("unreadable run", str(exc)), status_code=422)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def runs() -> str:
        searches = data.find_runs(root)[1]
        return pages.runs_page(str(root), data.list_runs(root), searches)

    @app.get("/run", response_class=HTMLResponse)
    def run(name: str) -> str:
        return pages.run_page(*data.run_detail(root, name))

    @app.get("/compare", response_class=HTMLResponse)
    def compare(run: list[str] = Query(default=[])) -> HTMLResponse:  # noqa: B008 - FastAPI's way to read a repeated param
        if len(run) < 2:
            return HTMLResponse(pages.message("comparison", "Tick at least two runs to compare."), status_code=400)
        return HTMLResponse(pages.compare_page(data.compare(root, run)))

    @app.get("/problem", response_class=HTMLResponse)
    def problem(run: str, id: str) -> str:
        return pages.problem_page(data.problem(root, run, id))

    @app.get("/search", response_class=HTMLResponse)
    def search(name: str) -> str:
        return pages.search_page(name, data.search_data(root, name))

    @app.get("/yaml", response_class=HTMLResponse)
    def config_yaml(search: str, id: str) -> str:
        return pages.yaml_page(search, id, data.search_yaml(root, search, id))

    @app.get("/yaml.txt", response_class=PlainTextResponse)
    def config_yaml_text(search: str, id: str) -> str:
        return data.search_yaml(root, search, id)

    @app.get("/events")
    async def events(run: str) -> StreamingResponse:
        await asyncio.to_thread(data.progress, root, run)  # a missing run is a 404 before the stream starts
        return StreamingResponse(progress_events(root, run, settings.poll_s), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})  # fmt: skip

    app.add_middleware(ApiKeyAuth, api_key=settings.api_key or None)
    app.add_middleware(BrowserKey)
    return app


def sse(event: str, payload: dict[str, object]) -> str:
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n"


async def progress_events(root: Path, run: str, poll_s: float) -> AsyncIterator[str]:
    """A `progress` event whenever the row count changes, until the planned total is reached or the run disappears.

    Polls the cheap row count; the rows themselves (for accuracy and tokens) are read only when it changed."""
    last: tuple[int, object] | None = None
    while True:
        try:
            count = await asyncio.to_thread(data.row_count, root, run)
            if count != last:
                now = await asyncio.to_thread(data.progress, root, run)
                last = (int(now["done"]), now["planned"])
                yield sse("progress", now)
                if now["finished"]:
                    return
            else:
                yield ": keep-alive\n\n"  # also how a closed page is noticed: the write fails and the stream ends
        except (data.RunGone, ThinktankError) as exc:  # deleted, or replaced by something unreadable, mid-run
            yield sse("gone", {"message": str(exc)})
            return
        await asyncio.sleep(poll_s)


class BrowserKey:
    """`?key=` or the dashboard's cookie becomes `Authorization: Bearer`, for `ApiKeyAuth` to check."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = list(scope.get("headers") or [])
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("key", [None])[0]
        key = given
        if key is None:
            for name, value in headers:
                if name == b"cookie":
                    morsel = SimpleCookie(value.decode("latin-1")).get(COOKIE)
                    key = morsel.value if morsel else key
        if key and not any(name == b"authorization" for name, _ in headers):
            scope = dict(scope, headers=[*headers, (b"authorization", b"Bearer " + key.encode("latin-1"))])

        async def send_with_cookie(message: Message) -> None:
            if given and message["type"] == "http.response.start" and message["status"] < 400:
                cookie = f"{COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/"
                message = dict(message, headers=[*message.get("headers", []), (b"set-cookie", cookie.encode("latin-1"))])
            await send(message)

        await self.app(scope, receive, send_with_cookie)
