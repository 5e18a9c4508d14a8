"""OpenAI chat-completions shapes, and how a request maps onto an architecture run.

Request options -> architecture (every internal generation call goes through the engine, which applies them):

- `model` names a served architecture (a preset or a YAML's `name:`); anything else is 404 `model_not_found`.
- `messages` become the one prompt techniques see (`TaskInput.prompt`): a single user message is the prompt
  as is; system/developer messages and earlier turns are folded in front of the last user message as text.
  The last non-system message must be the user's and content must be text (else 422).
- `max_tokens` / `max_completion_tokens` cap every internal generation call (a cap: never raises a node's own).
- `temperature`, `top_p`, `seed` replace the value of every internal call when given (omitted: the architecture's
  own); `stop` sequences are added to every call's own.
- `n` (1..16) returns the top-n candidates with distinct answers, best first; fewer when the architecture produced
  fewer (`thinktank.choices_available` says how many there were).
- A per-request budget: body field `thinktank: {"budget": {max_tokens, max_usd, max_calls, max_wall_s}}` and the
  headers `X-Thinktank-Budget-Tokens` / `X-Thinktank-Budget-Usd` (the stricter wins). A budget-cut answer is still
  200 with `finish_reason: "length"` and `thinktank.budget_cut: true`.
- `thinktank.kind` (text|code|sql|math), `entry_point` and `public_tests` describe the task for techniques that
  verify or vote by kind (default: text).
- Other OpenAI fields (`user`, `logprobs`, penalties, tools, ...) are accepted and ignored.

Responses: `usage` is the sum over every internal call (cache hits count as zero tokens); the extension field
`thinktank` carries calls, $, cache hits, wall latency, budget cut and a per-node breakdown.

Status codes: 400 malformed JSON / wrong types / values out of range, 401 missing or wrong key, 404 unknown model
or route, 413 body too large, 422 well-formed but not servable (no final user message, non-text content),
429 queue full (with Retry-After), 500 unexpected, 503 backend unreachable or failing (with the reason),
504 request timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import JSONResponse

from thinktank.arch import ArchResult
from thinktank.engine.budget import Budget
from thinktank.engine.engine import Overrides
from thinktank.exceptions import (
    BackendError,
    BudgetExceeded,
    ContextLengthExceeded,
    ServeError,
    ThinktankError,
)
from thinktank.tasks.base import Kind, TaskInput
from thinktank.techniques.base import Candidate

log = logging.getLogger("thinktank.serve")
MAX_N = 16
MAX_TOKENS = 32768
BUDGET_HEADERS = {"x-thinktank-budget-tokens": "max_tokens", "x-thinktank-budget-usd": "max_usd"}


# --- requests --------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        if any(part.type != "text" for part in self.content):
            kinds = sorted({part.type for part in self.content} - {"text"})
            raise ServeError(
                f"only text content is supported, got {', '.join(kinds)}", 422, param="messages", code="unsupported_content"
            )
        return "".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ThinktankOptions(BaseModel):
    """The `thinktank` extension of a request."""

    model_config = ConfigDict(extra="forbid")

    budget: Budget | None = None
    kind: Kind = "text"
    entry_point: str | None = None
    public_tests: list[str] = Field(default_factory=list, max_length=64)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    stream: bool = False
    stream_options: StreamOptions | None = None
    thinktank: ThinktankOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stop_sequences(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return value

    @property
    def options(self) -> ThinktankOptions:
        return self.thinktank or ThinktankOptions()

    def overrides(self) -> Overrides:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        cap = min((t for t in (self.max_tokens, self.max_completion_tokens) if t is not None), default=None)
        return Overrides(max_tokens=cap, temperature=self.temperature, top_p=self.top_p, seed=self.seed, stop=tuple(stops))

    def budget(self, headers: Mapping[str, str]) -> Budget | None:
        """The body's budget, tightened by the budget headers."""
        limits: dict[str, Any] = self.options.budget.model_dump() if self.options.budget else {}
        for header, field in BUDGET_HEADERS.items():
            if header not in headers:
                continue
            try:
                value = int(headers[header]) if field == "max_tokens" else float(headers[header])
                if not value > 0:
                    raise ValueError(value)
            except ValueError:
                raise ServeError(f"header {header} must be a positive number", 400, param=header, code="invalid_value") from None
            limits[field] = value if limits.get(field) is None else min(limits[field], value)
        return Budget(**limits) if any(v is not None for v in limits.values()) else None

    def task_input(self, request_id: str) -> TaskInput:
        system = [m.text() for m in self.messages if m.role in ("system", "developer")]
        turns = [m for m in self.messages if m.role not in ("system", "developer")]
        if not turns or turns[-1].role != "user":
            raise ServeError(
                "the last message (after any system messages) must be the user's",
                422,
                param="messages",
                code="unsupported_messages",
            )
        prompt = turns[-1].text()
        if len(turns) > 1:
            history = "\n".join(f"{m.role.capitalize()}: {m.text()}" for m in turns[:-1])
            prompt = f"Conversation so far:\n{history}\n\n{prompt}"
        if system:
            prompt = "\n\n".join([*system, prompt])
        opts = self.options
        return TaskInput(request_id, opts.kind, prompt, entry_point=opts.entry_point, public_tests=tuple(opts.public_tests))


# --- responses -------------------------------------------------------------------------------


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class NodeUsage(BaseModel):
    name: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cache_hits: int


class Extension(BaseModel):
    """The `thinktank` field of a response: what the architecture did for this answer."""

    architecture: str
    calls: int
    cost_usd: float
    cache_hits: int
    latency_s: float
    budget_cut: bool
    choices_available: int
    error: str | None = None
    nodes: list[NodeUsage]


class Message(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChoiceOut(BaseModel):
    index: int
    message: Message
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: UsageOut
    thinktank: Extension


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageOut | None = None
    thinktank: Extension | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "thinktank"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- result -> response ----------------------------------------------------------------------


def top_choices(result: ArchResult, n: int) -> list[Candidate]:
    """The first `n` candidates with distinct answers (the architecture orders them best first)."""
    seen: set[str] = set()
    chosen: list[Candidate] = []
    for candidate in result.candidates:
        key = (candidate.answer if candidate.answer is not None else candidate.text).strip()
        if key not in seen:
            seen.add(key)
            chosen.append(candidate)
    return chosen[:n]


def distinct_count(result: ArchResult) -> int:
    return len(top_choices(result, len(result.candidates) + 1))


def finish_reason(result: ArchResult, candidate: Candidate | None) -> str:
    """ "length" when the budget cut the run; else the reason of the calls of the candidate's node when they agree."""
    if result.budget_cut or candidate is None:
        return "length"
    node = next((n for n in result.trace.walk() if n.name == candidate.node), None)
    reasons = {r for call in (node.calls if node else []) for r in call.finish_reasons}
    return reasons.pop() if len(reasons) == 1 else "stop"


def check_answer(result: ArchResult) -> ArchResult:
    """A result to answer with: one with an answer, or one the budget cut (answered with what there is)."""
    if result.answer is None and not result.budget_cut:
        raise ServeError(f"the architecture produced no answer: {result.error}", 500, type="server_error", code="no_answer")
    return result


def usage_out(result: ArchResult) -> UsageOut:
    u = result.usage
    return UsageOut(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, total_tokens=u.total_tokens)


def extension(arch_name: str, result: ArchResult, latency_s: float) -> Extension:
    u = result.usage
    nodes = [
        NodeUsage(
            name=child.name,
            calls=(cu := child.usage).calls,
            prompt_tokens=cu.prompt_tokens,
            completion_tokens=cu.completion_tokens,
            cost_usd=cu.cost_usd,
            cache_hits=cu.cache_hits,
        )
        for child in result.trace.children
    ]
    return Extension(
        architecture=arch_name,
        calls=u.calls,
        cost_usd=u.cost_usd,
        cache_hits=u.cache_hits,
        latency_s=round(latency_s, 4),
        budget_cut=result.budget_cut,
        choices_available=distinct_count(result),
        error=result.error,
        nodes=nodes,
    )


def completion(request_id: str, created: int, arch_name: str, result: ArchResult, n: int, latency_s: float) -> ChatCompletion:
    chosen: list[Candidate | None] = [*top_choices(result, n)] or [None]
    choices = [
        ChoiceOut(index=i, message=Message(content=c.text if c else ""), finish_reason=finish_reason(result, c))
        for i, c in enumerate(chosen)
    ]
    return ChatCompletion(
        id=request_id,
        created=created,
        model=arch_name,
        choices=choices,
        usage=usage_out(result),
        thinktank=extension(arch_name, result, latency_s),
    )


# --- errors ----------------------------------------------------------------------------------


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
