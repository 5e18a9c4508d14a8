"""Reading what an OpenAI-compatible server answered: a chat completion, a streamed one, a model list.

Pure functions and accumulators, no I/O: `openai_compat` feeds them what it read. Anything
malformed becomes a `BackendError`, so no `KeyError`/`ValueError` leaves the error tree.
"""

from __future__ import annotations

import json
from typing import Any

from thinktank.exceptions import BackendError, BackendUnreachable
from thinktank.types import BackendResponse, Choice, EmbeddingRequest, EmbeddingResponse, GenerationRequest, ToolCall

#: what a malformed (but valid JSON) answer raises while it is read
_MALFORMED = (AttributeError, KeyError, TypeError, ValueError)
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def split_reasoning(content: str, reasoning: str | None = None) -> tuple[str, str | None]:
    """(the reply, the model's reasoning): a server's `reasoning_content`, and/or a leading `<think>…</think>`.

    An unclosed `<think>` (the call hit its token limit while thinking) is all reasoning.
    """
    parts = [reasoning] if reasoning else []
    stripped = content.lstrip()
    if stripped.startswith(THINK_OPEN):
        inner, closed, rest = stripped[len(THINK_OPEN) :].partition(THINK_CLOSE)
        parts.append(inner.strip())
        content = rest.lstrip() if closed else ""
    return content, "\n".join(p for p in parts if p) or None


def tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    """The `tool_calls` of a message; arguments a server sent as an object are dumped back to JSON text."""
    calls = []
    for call in raw or []:
        function = call["function"]
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        calls.append(ToolCall(str(call.get("id") or ""), str(function["name"]), arguments))
    return tuple(calls)


def _choice(message: dict[str, Any], finish_reason: str | None, tokens: int) -> Choice:
    text, reasoning = split_reasoning(message.get("content") or "", message.get("reasoning_content"))
    calls = tool_calls(message.get("tool_calls"))
    finish = "tool_calls" if calls and finish_reason in (None, "stop", "tool_calls") else finish_reason or "stop"
    return Choice(text, finish, tokens, tool_calls=calls, reasoning=reasoning)


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
    messages = [c.get("message") or {} for c in raw_choices]
    # the split of tokens over choices goes by everything each generated: reasoning and tool calls too
    texts = [
        (m.get("content") or "")
        + (m.get("reasoning_content") or "")
        + (json.dumps(m["tool_calls"]) if m.get("tool_calls") else "")
        for m in messages
    ]
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
        choices=[_choice(m, c.get("finish_reason"), share) for m, c, share in zip(messages, raw_choices, shares, strict=True)],
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=cached_tokens,
        latency_s=latency,
        model=str(data.get("model") or request.model),
    )


class StreamedMessage:
    """One choice's deltas gathered into a message: content (the reply outside `<think>`), reasoning, tool calls.

    `feed` returns the reply text a delta adds, so a `<think>` block never reaches a stream's reader: content that
    may still turn out to open one is held back until it cannot.
    """

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.pending = ""  # content not yet known to be reply or reasoning
        self.state = "start"  # start -> (thinking -> after_think ->) reply
        self.chunks = 0

    def feed(self, delta: dict[str, Any]) -> str:
        if delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls"):
            self.chunks += 1  # the token count of a stream without usage: one per chunk that carried something
        if delta.get("reasoning_content"):
            self.reasoning.append(delta["reasoning_content"])
        for call in delta.get("tool_calls") or []:
            into = self.calls.setdefault(int(call.get("index") or 0), {"id": "", "name": "", "arguments": ""})
            function = call.get("function") or {}
            into["id"] = call.get("id") or into["id"]
            into["name"] += function.get("name") or ""
            into["arguments"] += function.get("arguments") or ""
        return self._content(delta.get("content") or "")

    def _content(self, text: str) -> str:
        self.pending += text
        if self.state == "start":
            head = self.pending.lstrip()
            if THINK_OPEN.startswith(head):  # nothing yet, or maybe the start of "<think>"
                return ""
            if head.startswith(THINK_OPEN):
                self.state, self.pending = "thinking", head[len(THINK_OPEN) :]
            else:
                self.state = "reply"
        if self.state == "thinking":
            inner, closed, rest = self.pending.partition(THINK_CLOSE)
            if not closed:
                return ""
            self.reasoning.append(inner.strip())
            self.state, self.pending = "after_think", rest
        if self.state == "after_think":  # the blank lines after </think> are not part of the reply
            self.pending = self.pending.lstrip()
            if not self.pending:
                return ""
            self.state = "reply"
        out, self.pending = self.pending, ""
        self.content.append(out)
        return out

    def finish(self) -> None:
        """The stream ended: content still held back is reply (a lone "<th"), or reasoning (an unclosed think)."""
        if self.state == "thinking":
            self.reasoning.append(self.pending.strip())
        elif self.pending:
            self.content.append(self.pending)
        self.pending = ""

    def message(self) -> dict[str, Any]:
        self.finish()
        message: dict[str, Any] = {"content": "".join(self.content)}
        if reasoning := "\n".join(r for r in self.reasoning if r):
            message["reasoning_content"] = reasoning
        if self.calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for _, c in sorted(self.calls.items())
            ]
        return message


class OneChoiceStream:
    """The chunks of a streamed call for one sample, gathered into its text, finish reason and usage.

    Without a usage chunk (a server that ignores `stream_options`), a token is counted per content chunk.
    """

    def __init__(self) -> None:
        self.gathered = StreamedMessage()
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> list[str]:
        """Take one chunk; returns its reply-text deltas, in order (reasoning and tool calls are gathered apart)."""
        self.usage = chunk.get("usage") or self.usage
        deltas = []
        for choice in chunk.get("choices") or []:
            self.finish = choice.get("finish_reason") or self.finish
            if text := self.gathered.feed(choice.get("delta") or {}):
                deltas.append(text)
        return deltas

    def tail(self) -> str:
        """Reply text held back until the stream ended (it looked like the start of a `<think>`)."""
        before = len(self.gathered.content)
        self.gathered.finish()
        return "".join(self.gathered.content[before:])

    def response(self, model: str, latency: float) -> BackendResponse:
        usage = self.usage or {}
        prompt_tokens, cached_tokens = _prompt_tokens(usage)
        try:
            completion_tokens = int(usage.get("completion_tokens") or self.gathered.chunks)
            choice = _choice(self.gathered.message(), self.finish, completion_tokens)
        except _MALFORMED as exc:
            raise BackendError(f"backend {model} streamed a malformed message: {exc!r}") from exc
        return BackendResponse(
            choices=[choice],
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
        self.texts: dict[int, StreamedMessage] = {}
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
            self.texts.setdefault(index, StreamedMessage()).feed(choice.get("delta") or {})
            if choice.get("finish_reason"):
                self.finish[index], self.last_finished = choice["finish_reason"], index

    def completion(self, n: int, url: str) -> dict[str, Any]:
        """The gathered chat completion; a stream that ended before each of the n choices finished was cut."""
        unfinished = sorted(set(range(n)) - set(self.finish))
        if unfinished:
            raise BackendUnreachable(f"backend {url} ended the stream before choice(s) {unfinished} finished", url)
        choices = [
            {"index": i, "message": gathered.message(), "finish_reason": self.finish[i],
             "usage": self.usage.get(i) or {"completion_tokens": gathered.chunks}}
            for i, gathered in sorted(self.texts.items())
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
