"""httpx exceptions and HTTP error answers, translated to the thinktank error tree in one place.

Like `map_httpcore_exceptions` in httpx's transport: the most specific class, `raise … from exc`,
so callers (and `is_retryable`) only ever see `BackendError` subclasses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import httpx

from thinktank.exceptions import (
    BackendDied,
    BackendError,
    BackendStatusError,
    BackendTimeout,
    BackendUnreachable,
    ContextLengthExceeded,
)

#: what servers put in a 400's message or error type/code when the prompt does not fit
CONTEXT_LENGTH_MARKERS = (
    "context length",
    "context_length",
    "exceeds the available context",
    "exceed_context_size",
    "too many tokens",
)


@contextlib.contextmanager
def map_httpx_errors(url: str, explain_unreachable: Callable[[], str | None] | None = None) -> Iterator[None]:
    """Re-raise httpx errors inside the block as `BackendError`s; a server we own that is gone is `BackendDied`."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise BackendTimeout(f"timed out talking to {url}: {type(exc).__name__}", url) from exc
    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        if explain_unreachable is not None and (why := explain_unreachable()) is not None:
            raise BackendDied(why, url) from exc
        raise BackendUnreachable(
            f"cannot reach backend at {url} ({str(exc) or type(exc).__name__});"
            " is the server running? For the embedded one: `thinktank backend start`",
            url,
        ) from exc
    except httpx.HTTPError as exc:  # e.g. a base URL without http://, a proxy refusing us
        raise BackendError(f"request to {url} failed: {type(exc).__name__}: {exc}", url) from exc


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds, or None when absent or not a number (HTTP dates are not used by LLM servers)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def status_error(response: httpx.Response, url: str) -> BackendStatusError:
    """The error for an HTTP 4xx/5xx answer, quoting the server's message (OpenAI-shaped body, or the raw text)."""
    kind = ""
    try:
        body = response.json()
        detail = body.get("error", body)
        message = detail.get("message", str(detail)) if isinstance(detail, dict) else str(detail)
        if isinstance(detail, dict):  # OpenAI: code "context_length_exceeded"; llama.cpp: type "exceed_context_size_error"
            kind = f"{detail.get('type', '')} {detail.get('code', '')}"
    except (ValueError, AttributeError):
        message = response.text[:500]
    text = f"backend {url} answered HTTP {response.status_code}: {message}"
    cls = BackendStatusError
    if response.status_code == 400 and any(m in f"{message} {kind}".lower() for m in CONTEXT_LENGTH_MARKERS):
        cls = ContextLengthExceeded
    return cls(text, response.status_code, url, retry_after=retry_after_seconds(response))
