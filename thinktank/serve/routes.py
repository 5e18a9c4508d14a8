"""The HTTP endpoints; each is a few lines over `ChatService`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from thinktank.serve.metrics import CONTENT_TYPE
from thinktank.serve.service import ChatService, OpenStream
from thinktank.serve.wire import ChatCompletion, ChatCompletionRequest, ErrorResponse, ModelList

router = APIRouter()
ERROR_STATUSES = (400, 401, 404, 413, 422, 429, 500, 502, 503, 504)
ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in ERROR_STATUSES}


def service(request: Request) -> ChatService:
    return request.app.state.service  # type: ignore[no-any-return]


def client_key(request: Request) -> str:
    """Whom the concurrency limit counts against: the API key (set by the auth middleware), else the client address."""
    key = request.scope.get("thinktank_key")
    if key:
        return str(key)
    return request.client.host if request.client else "anonymous"


class SSEResponse(StreamingResponse):
    """A streaming response that always releases its stream (and slot), even if the client left before it began."""

    def __init__(self, stream: OpenStream) -> None:
        super().__init__(stream.chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.stream.aclose()


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    svc = service(request)
    if body.stream:
        return SSEResponse(await svc.stream(body, request.headers, client_key(request)))
    result = await svc.complete(body, request.headers, client_key(request))
    return Response(result.model_dump_json(), media_type="application/json")


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    return service(request).models()


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    svc = service(request)
    return {
        "status": "ok",
        "architectures": sorted(svc.architectures),
        "in_flight": svc.limiter.in_flight(),
        "queued": svc.limiter.queued(),
    }


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(service(request).metrics.render(), media_type=CONTENT_TYPE)
