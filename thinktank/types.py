"""Value types shared by backends, the engine and techniques."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from thinktank.usage import Usage

#: a chat message as the OpenAI API has it: `role` and `content`, and for tool use `tool_calls` / `tool_call_id`
Message = dict[str, Any]


@dataclass(frozen=True)
class GenerationRequest:
    """One chat generation: `n` samples of `messages` from `model`."""

    messages: list[Message]
    model: str
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)  # forwarded to the server as is
    # OpenAI tool use and structured output, forwarded as the client sent them (None: not asked for)
    tools: tuple[dict[str, Any], ...] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not self.messages:
            raise ValueError("messages must not be empty")

    def with_(self, **changes: Any) -> GenerationRequest:
        return replace(self, **changes)

    @classmethod
    def from_prompt(cls, prompt: str, model: str, **kwargs: Any) -> GenerationRequest:
        return cls(messages=[{"role": "user", "content": prompt}], model=model, **kwargs)


@dataclass(frozen=True)
class ToolCall:
    """One function call a model asked for; `arguments` is the JSON text as the model wrote it (may be malformed)."""

    id: str
    name: str
    arguments: str


@dataclass
class Choice:
    """One generated text as a backend returned it.

    `text` excludes the model's reasoning (`<think>…</think>` or the server's `reasoning_content`), which is in
    `reasoning`; its tokens are still in `completion_tokens`.
    """

    text: str
    finish_reason: str
    completion_tokens: int
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None


@dataclass
class BackendResponse:
    """What one HTTP call (or in-process call) produced, with that call's exact usage."""

    choices: list[Choice]
    prompt_tokens: int
    cached_prompt_tokens: int = 0
    latency_s: float = 0.0
    model: str = ""

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)


@dataclass
class Completion:
    """One sample handed to a technique, with where it came from and what it cost."""

    text: str
    model: str
    sample_index: int
    finish_reason: str
    usage: Usage
    cached: bool = False
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None  # kept out of `text`, so out of voting, judging and fusion


@dataclass(frozen=True)
class EmbeddingRequest:
    """Embed `texts` with `model` (an OpenAI-compatible `/v1/embeddings` call); one vector per text, in order."""

    texts: tuple[str, ...]
    model: str

    def __post_init__(self) -> None:
        if not self.texts:
            raise ValueError("texts must not be empty")


@dataclass
class EmbeddingResponse:
    """What one embeddings call produced: one vector per input text, and that call's usage."""

    vectors: list[list[float]]
    prompt_tokens: int
    latency_s: float = 0.0
    model: str = ""
