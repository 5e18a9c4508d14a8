"""The wire: OpenAI chat-completions request, response and error shapes as pydantic models (as vLLM's `protocol.py`).

Only shapes and value ranges live here (a value out of range is a 400 from validation); what a request
means for a run is `mapping`, how a result becomes a response is `responses`, errors are `errors`.

Every request field is in one of three sets (`HONOURED`, `ACCEPTED`, `REFUSED`); `mapping.check_fields` answers
a refused field with a 400 that names it, and so any field in none of them: nothing is silently dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from thinktank.engine.budget import Budget
from thinktank.kinds import KindName

MAX_N = 16
MAX_TOKENS = 32768

#: fields that change what is generated (tools, tool_choice, response_format, parallel_tool_calls and tool-role
#: messages only on architectures whose last step is a generation, see `mapping.client_fields`)
HONOURED = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "seed",
    "stream", "stream_options", "thinktank", "tools", "tool_choice", "parallel_tool_calls", "response_format",
})  # fmt: skip
#: fields that are accepted and have no effect on an answer (bookkeeping for the client's side)
ACCEPTED = frozenset({"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"})
#: fields no architecture honours, with why; a 400 unless the value is null or what asks for nothing (the default)
REFUSED: dict[str, tuple[str, tuple[Any, ...]]] = {
    "logprobs": ("token log-probabilities of an answer chosen over several calls are not served", (False,)),
    "top_logprobs": ("token log-probabilities of an answer chosen over several calls are not served", (0,)),
    "logit_bias": ("logit bias is not applied to the architectures' internal calls", ({},)),
    "presence_penalty": ("penalties are not applied to the architectures' internal calls", (0, 0.0)),
    "frequency_penalty": ("penalties are not applied to the architectures' internal calls", (0, 0.0)),
    "functions": ("the deprecated `functions` API is not served; use `tools`", ()),
    "function_call": ("the deprecated `function_call` API is not served; use `tool_choice`", ()),
    "modalities": ("only text output is served", (["text"],)),
    "audio": ("only text output is served", ()),
    "prediction": ("predicted outputs are not served", ()),
    "web_search_options": ("web search is not served", ()),
    "reasoning_effort": ("the architectures set their own calls' parameters", ()),
    "verbosity": ("the architectures set their own calls' parameters", ()),
}


# --- requests --------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    arguments: str


class ToolCallOut(BaseModel):
    """A tool call in a reply, or in an assistant message a client sends back."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallOut] | None = Field(None, max_length=128)
    tool_call_id: str | None = None
    name: str | None = None


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field("response", min_length=1, max_length=64)
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type json_schema needs a `json_schema: {name, schema}`")
        return self

    @property
    def is_json(self) -> bool:
        return self.type != "text"


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
    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

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
    content: str | None
    tool_calls: list[ToolCallOut] | None = None
    reasoning_content: str | None = None  # the model's thinking, kept out of `content` (and of voting and judging)


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


class ToolCallDelta(ToolCallOut):
    index: int


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


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
