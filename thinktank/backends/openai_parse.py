"""Reading what an OpenAI-compatible server answered: a chat completion, a streamed one, a model list.

Pure functions and accumulators, no I/O: `openai_compat` feeds them what it read. Anything
malformed becomes a `BackendError`, so no `KeyError`/`ValueError` leaves the error tree.
"""

from __future__ import annotations

from typing import Any

from thinktank.exceptions import BackendError, BackendUnreachable
from thinktank.types import BackendResponse, Choice, EmbeddingRequest, EmbeddingResponse, GenerationRequest

#: what a malformed (but valid JSON) answer raises while it is read
_MALFORMED = (AttributeError, KeyError, TypeError, ValueError)


def _prompt_tokens(usage: dict[str, Any]) -> tuple[int, int]:
    """(prompt tokens, of which served from the server's prompt cache) of a `usage` object."""
    details = usage.get("prompt_tokens_details") or {}
    return int(usage.get("prompt_tokens") or 0), int(details.get("cached_tokens") or 0)


def parse_completion(
    data: dict[str, Any], request: GenerationRequest, latency: float, *, url: str, per_choice_usage: bool = False
) -> BackendResponse:
    """A chat completion as a `BackendResponse` of `request.n` choices.

    `per_choice_usage`: every choice carries its own `usage` (as `ChoiceCollector` builds them); otherwise
    the call's completion tokens are split over the choices in proportion to their length.
    """
    try:
        return _parse(data, request, latency, url, per_choice_usage)
    except _MALFORMED as exc:
        raise BackendError(f"backend {url} returned a malformed completion: {exc!r}", url) from exc


def _parse(data: dict[str, Any], request: GenerationRequest, latency: float, url: str, per_choice_usage: bool) -> BackendResponse:
    raw_choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))[: request.n]
    if len(raw_choices) < request.n:
        hint = " (does the server support `n`? if not, pass supports_native_n=False)" if request.n > 1 else ""
        raise BackendError(f"backend {url} returned {len(raw_choices)} choice(s) for n={request.n}{hint}", url)
    usage = data.get("usage") or {}
    completion_total = int(usage.get("completion_tokens") or 0)
    texts = [(c.get("message") or {}).get("content") or "" for c in raw_choices]
    if request.n > 1 and per_choice_usage:
        shares = [int(c["usage"].get("completion_tokens") or 0) for c in raw_choices]
    else:
        # Split the call's completion tokens over choices in proportion to their length;
        # exact when there is one choice.
        lengths = [max(1, len(t)) for t in texts]
        shares = [completion_total * n // sum(lengths) for n in lengths]
        shares[0] += completion_total - sum(shares)
    prompt_tokens, cached_tokens = _prompt_tokens(usage)
    return BackendResponse(
        choices=[
            Choice(text, c.get("finish_reason") or "stop", share)
            for text, c, share in zip(texts, raw_choices, shares, strict=True)
        ],
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=cached_tokens,
        latency_s=latency,
        model=str(data.get("model") or request.model),
    )


class OneChoiceStream:
    """The chunks of a streamed call for one sample, gathered into its text, finish reason and usage.

    Without a usage chunk (a server that ignores `stream_options`), a token is counted per content chunk.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> list[str]:
        """Take one chunk; returns its text deltas, in order."""
        self.usage = chunk.get("usage") or self.usage
        deltas = []
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content") or ""
            self.finish = choice.get("finish_reason") or self.finish
            if text:
                self.parts.append(text)
                deltas.append(text)
        return deltas

    def response(self, model: str, latency: float) -> BackendResponse:
        usage = self.usage or {}
        prompt_tokens, cached_tokens = _prompt_tokens(usage)
        completion_tokens = int(usage.get("completion_tokens") or len(self.parts))
        return BackendResponse(
            choices=[Choice("".join(self.parts), self.finish or "stop", completion_tokens)],
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached_tokens,
            latency_s=latency,
            model=model,
        )


class ChoiceCollector:
    """The chunks of one streamed call of n choices, gathered into a chat completion whose choices carry their usage.

    llama-server's `usage` for n > 1 covers the first choice only; streamed, it follows each choice's last
    chunk (the one with its finish_reason) with a usage chunk that has no choices. A choice without one is
    counted a token per content chunk. (Per-token logprobs would count them too, at 7% more time per call.)
    """

    def __init__(self) -> None:
        self.texts: dict[int, list[str]] = {}
        self.finish: dict[int, str] = {}
        self.usage: dict[int, dict[str, Any]] = {}
        self.last_finished: int | None = None
        self.model: str | None = None

    def feed(self, chunk: dict[str, Any]) -> None:
        self.model = chunk.get("model") or self.model
        choices = chunk.get("choices") or []
        if not choices and chunk.get("usage") and self.last_finished is not None:
            self.usage[self.last_finished], self.last_finished = chunk["usage"], None
        for choice in choices:
            index = int(choice.get("index") or 0)
            parts = self.texts.setdefault(index, [])
            if text := (choice.get("delta") or {}).get("content"):
                parts.append(text)
            if choice.get("finish_reason"):
                self.finish[index], self.last_finished = choice["finish_reason"], index

    def completion(self, n: int, url: str) -> dict[str, Any]:
        """The gathered chat completion; a stream that ended before each of the n choices finished was cut."""
        unfinished = sorted(set(range(n)) - set(self.finish))
        if unfinished:
            raise BackendUnreachable(f"backend {url} ended the stream before choice(s) {unfinished} finished", url)
        choices = [
            {"index": i, "message": {"content": "".join(parts)}, "finish_reason": self.finish[i],
             "usage": self.usage.get(i) or {"completion_tokens": len(parts)}}
            for i, parts in sorted(self.texts.items())
        ]  # fmt: skip
        return {"choices": choices, "usage": self.usage.get(0) or {}, "model": self.model}


def model_ids(data: dict[str, Any], url: str) -> list[str]:
    """The model names of a `/models` answer (`{"data": [{"id": ...}, ...]}`)."""
    try:
        ids = [m["id"] for m in data.get("data", [])]
    except _MALFORMED as exc:
        raise BackendError(f"backend {url} returned a malformed model list: {exc!r}", url) from exc
    if not all(isinstance(i, str) for i in ids):
        raise BackendError(f"backend {url} returned a model list with non-string ids: {ids[:5]!r}", url)
    return ids


def parse_embeddings(data: dict[str, Any], request: EmbeddingRequest, latency: float, *, url: str) -> EmbeddingResponse:
    """An embeddings answer (`{"data": [{"index": i, "embedding": [...]}, ...], "usage": ...}`) as one vector per text.

    A wrong number of vectors, or vectors of different lengths in one answer, is a `BackendError`.
    """
    try:
        items = sorted(data["data"], key=lambda item: int(item.get("index", 0)))
        vectors = [[float(x) for x in item["embedding"]] for item in items]
        prompt_tokens, _ = _prompt_tokens(data.get("usage") or {})
    except _MALFORMED as exc:
        raise BackendError(f"backend {url} returned a malformed embeddings answer: {exc!r}", url) from exc
    if len(vectors) != len(request.texts):
        raise BackendError(f"backend {url} returned {len(vectors)} embedding(s) for {len(request.texts)} text(s)", url)
    dims = sorted({len(v) for v in vectors})
    if len(dims) != 1 or dims[0] == 0:
        raise BackendError(f"backend {url} returned embeddings of inconsistent dimension: {dims}", url)
    return EmbeddingResponse(vectors, prompt_tokens, latency, str(data.get("model") or request.model))
