"""Wiring: the FastAPI app, its lifespan (the engine is opened here), middleware and the error handlers.

    app = create_app(lambda: open_engine(["qwen2.5-coder-0.5b-instruct"]), [load_architecture("single", [...])])
    uvicorn.run(app, host="127.0.0.1", port=8000)

Middleware, outermost first: request metrics, API-key auth (before any body is read), body size limit.
Every error leaves as an OpenAI error object: one handler for the `ThinktankError` tree (and any other
exception, as a 500), one for request validation, one for routing errors.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thinktank.arch import Architecture
from thinktank.engine.engine import Engine
from thinktank.exceptions import ConfigError, ThinktankError
from thinktank.serve.errors import ServeError, as_serve_error, error_response
from thinktank.serve.limits import BodySizeLimit
from thinktank.serve.metrics import Metrics
from thinktank.serve.routes import router
from thinktank.serve.service import ChatService, ServeSettings
from thinktank.telemetry import TraceSink
from thinktank.version import __version__

EngineSource = Engine | Callable[[], AbstractAsyncContextManager[Engine]]
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
ROUTES = frozenset({"/v1/chat/completions", "/v1/models", "/health", "/metrics"})


def create_app(
    engine: EngineSource,
    architectures: Iterable[Architecture] | Mapping[str, Architecture],
    settings: ServeSettings | None = None,
    telemetry: TraceSink | None = None,
) -> FastAPI:
    """An app serving `architectures` (by name) over `engine`, or over the engine a factory opens in the lifespan;
    each request's trace goes to `telemetry` if given."""
    settings = settings or ServeSettings()
    archs = dict(architectures) if isinstance(architectures, Mapping) else {}
    if not isinstance(architectures, Mapping):
        for arch in architectures:
            if arch.name in archs:
                raise ConfigError(f"two architectures are named {arch.name!r}; give one a different `name:`")
            archs[arch.name] = arch
    if not archs:
        raise ConfigError("nothing to serve: no architecture given")
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            opened = engine if isinstance(engine, Engine) else await stack.enter_async_context(engine())
            app.state.service = ChatService(opened, archs, settings, metrics, telemetry)
            yield  # uvicorn finishes in-flight requests before we get here on shutdown

    app = FastAPI(title="thinktank", version=__version__, lifespan=lifespan, redoc_url=None)
    app.include_router(router)
    app.add_exception_handler(ThinktankError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_error)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyAuth, api_key=settings.api_key or None)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


async def on_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(as_serve_error(exc))


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request", "type": ""}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        details = first.get("ctx")
        reason = details.get("error", first["msg"]) if isinstance(details, dict) else first["msg"]
        return error_response(ServeError(f"malformed JSON: {reason}", 400, code="invalid_json"))
    param = ".".join(loc) or None
    message = f"{param}: {first['msg']}" if param else str(first["msg"])
    return error_response(ServeError(message, 400, param=param, code="invalid_value"))


async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_response(ServeError(str(exc.detail), exc.status_code, code=codes.get(exc.status_code)))


class ApiKeyAuth:
    """`Authorization: Bearer <key>` on every path but health and the API docs, compared in constant time."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app, self.expected = app, api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.expected is None or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        if not token or scheme.lower() != b"bearer":
            error = ServeError("missing API key: send `Authorization: Bearer <key>`", 401, code="missing_api_key")
        elif not hmac.compare_digest(token.strip(), self.expected):
            error = ServeError("invalid API key", 401, code="invalid_api_key")
        else:
            scope["thinktank_key"] = token.strip().decode("latin-1")
            await self.app(scope, receive, send)
            return
        response = error_response(error)
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)


class RequestMetrics:
    """Counts every request by route and status and times it to the last byte (streams included)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = 500  # if the app dies before answering
        started = time.monotonic()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            with self.metrics.in_flight.track_inprogress():
                await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.observe_request(route, status, time.monotonic() - started)
