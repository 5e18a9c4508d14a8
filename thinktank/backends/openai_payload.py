"""The JSON body of an OpenAI chat-completions call, built from a `GenerationRequest`.

`extra_body` goes in last, so a caller can pass server-specific fields (llama.cpp's `top_k`,
`cache_prompt`, ...) and override any default here. `tools`, `tool_choice` and `response_format` go out in
the OpenAI shape; llama-server honours them natively (tools need its `--jinja` chat templates, on by default).
"""

from __future__ import annotations

from typing import Any

from thinktank.types import EmbeddingRequest, GenerationRequest


def chat_payload(request: GenerationRequest) -> dict[str, Any]:
    """The body of a plain (not streamed) call."""
    payload: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "n": request.n,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
    }
    if request.stop:
        payload["stop"] = list(request.stop)
    if request.seed is not None:
        payload["seed"] = request.seed
    if request.tools is not None:
        payload["tools"] = list(request.tools)
    if request.tool_choice is not None:
        payload["tool_choice"] = request.tool_choice
    if request.response_format is not None:  # llama-server turns json_object / json_schema into a grammar
        payload["response_format"] = request.response_format
    payload.update(request.extra_body)
    return payload


def streamed(payload: dict[str, Any]) -> dict[str, Any]:
    """The same call, streamed, with the usage chunk(s) the server sends when asked (`include_usage`)."""
    return {**payload, "stream": True, "stream_options": {"include_usage": True}}


def embedding_payload(request: EmbeddingRequest) -> dict[str, Any]:
    """The body of a `/embeddings` call: every text of the request in one batch."""
    return {"model": request.model, "input": list(request.texts), "encoding_format": "float"}
