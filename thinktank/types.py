"""Value types shared by backends, the engine and techniques."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from thinktank.usage import Usage

Message = dict[str, str]


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


@dataclass
class Choice:
    """One generated text as a backend returned it."""

    text: str
    finish_reason: str
    completion_tokens: int


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
