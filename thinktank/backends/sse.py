"""Server-sent events as OpenAI-compatible servers stream them: the `data` of each event, as a JSON object.

Network errors while reading are mapped like any other call's (`map_httpx_errors`); an error
the server reports inside the stream (an `error` object) becomes a `BackendError`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from thinktank.backends.http_errors import map_httpx_errors
from thinktank.exceptions import BackendError

#: the data of the event after which an OpenAI-compatible server sends nothing more
DONE = "[DONE]"


async def sse_data(
    response: httpx.Response, url: str, explain_unreachable: Callable[[], str | None] | None = None
) -> AsyncIterator[str]:
    """The `data` of each server-sent event (comments and other fields skipped)."""
    lines: list[str] = []
    with map_httpx_errors(url, explain_unreachable):
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                lines.append(line[5:].removeprefix(" "))
            elif not line and lines:
                yield "\n".join(lines)
                lines = []
    if lines:
        yield "\n".join(lines)


def chunk_json(data: str, url: str) -> dict[str, Any]:
    """One streamed chunk as a JSON object; invalid JSON or an error the server streamed is a `BackendError`."""
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise BackendError(f"backend {url} streamed invalid JSON: {data[:200]!r}", url) from exc
    if not isinstance(chunk, dict):
        raise BackendError(f"backend {url} streamed JSON that is not an object: {data[:200]!r}", url)
    if chunk.get("error"):
        error = chunk["error"]
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        raise BackendError(f"backend {url} failed while streaming: {message}", url)
    return chunk


class SSEChunks:
    """The JSON chunks of a streamed chat completion, up to (not including) `[DONE]`.

    `done` tells afterwards whether the server closed the stream with `[DONE]`: a stream that just
    stops may have been cut by a dying server or a proxy, so the caller checks what it received.
    """

    def __init__(self, response: httpx.Response, url: str, explain_unreachable: Callable[[], str | None] | None = None) -> None:
        self.response, self.url, self.explain_unreachable = response, url, explain_unreachable
        self.done = False

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        async for data in sse_data(self.response, self.url, self.explain_unreachable):
            if data.strip() == DONE:
                self.done = True
                return
            yield chunk_json(data, self.url)
