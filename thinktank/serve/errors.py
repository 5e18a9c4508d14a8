"""The HTTP face of errors: `ServeError`, how any error a request ends with maps onto one, and its response.

`ServeError` is HTTP-shaped (a status code, OpenAI's error `type`/`code`/`param`, a Retry-After), so it lives
in the serving layer, as vLLM maps errors in its serving layer; it is still a `ThinktankError`, one leaf of the
one tree (`thinktank.exceptions`), so the app's single handler for the root class answers it.

Status codes: 400 malformed JSON / wrong types / values out of range, 401 missing or wrong key, 404 unknown model
or route, 413 body too large, 422 well-formed but not servable (no final user message, non-text content),
429 queue full (with Retry-After), 500 unexpected, 502 the model's tool calls / JSON reply malformed
(every candidate's, with the reason), 503 backend unreachable or failing (with the reason),
504 request timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import JSONResponse

from thinktank.exceptions import BackendError, BudgetExceeded, ContextLengthExceeded, ThinktankError
from thinktank.serve.wire import ErrorBody, ErrorResponse

log = logging.getLogger("thinktank.serve")


class ServeError(ThinktankError):
    """A served request that ends in an OpenAI-style error response (unknown model, bad key, queue full, ...)."""

    def __init__(
        self,
        message: str,
        status_code: int,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code, self.type, self.code, self.param, self.retry_after = status_code, type, code, param, retry_after
        super().__init__(message)


def as_serve_error(exc: BaseException) -> ServeError:
    """The HTTP face of any error a request can end with; unexpected ones are logged here, and not shown to clients."""
    if isinstance(exc, ServeError):
        return exc
    if isinstance(exc, ContextLengthExceeded):
        return ServeError(str(exc), 400, code="context_length_exceeded", param="messages")
    if isinstance(exc, BackendError):
        return ServeError(f"backend unavailable: {exc}", 503, type="server_error", code="backend_unavailable")
    if isinstance(exc, TimeoutError):
        return ServeError("the request timed out", 504, type="server_error", code="timeout")
    if isinstance(exc, BudgetExceeded):  # Architecture.run turns these into budget-cut answers; kept for safety
        return ServeError(str(exc), 400, code="budget_exceeded")
    log.error("request failed", exc_info=exc)
    if isinstance(exc, ThinktankError):
        return ServeError(f"{type(exc).__name__}: {exc}", 500, type="server_error", code="internal_error")
    return ServeError("internal server error", 500, type="server_error", code="internal_error")


def error_body(exc: ServeError) -> dict[str, Any]:
    return ErrorResponse(error=ErrorBody(message=str(exc), type=exc.type, param=exc.param, code=exc.code)).model_dump()


def error_response(exc: ServeError) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after is not None else None
    return JSONResponse(error_body(exc), status_code=exc.status_code, headers=headers)
