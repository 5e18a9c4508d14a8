"""The wire: OpenAI chat-completions request, response and error shapes as pydantic models (as vLLM's `protocol.py`).

Only shapes and value ranges live here (a value out of range is a 400 from validation); what a request
means for a run is `mapping`, how a result becomes a response is `responses`, errors are `errors`.
Other OpenAI fields (`user`, `logprobs`, penalties, tools, ...) are accepted and ignored (`extra="allow"`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from thinktank.engine.budget import Budget
from thinktank.kinds import KindName

MAX_N = 16
MAX_TOKENS = 32768


# --- requests --------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ThinktankOptions(BaseModel):
    """The `thinktank` extension of a request."""

    model_config = ConfigDict(extra="forbid")

    budget: Budget | None = None
    kind: KindName = "text"
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
    passages: list[str] | None = None  # ids of the corpus passages the answer was grounded in (retrieval presets)


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
