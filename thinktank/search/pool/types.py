"""What the sample pool holds: its spec, and the answers, calls, tests and repair chains replay reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field, field_validator

__all__ = [
    "Answer",
    "Call",
    "Chain",
    "Cost",
    "Info",
    "PoolProgress",
    "PoolSpec",
    "TestSet",
    "answer_hash",
    "call_values",
    "digest",
    "key_hash",
]


class PoolSpec(BaseModel):
    """What the pool holds per problem; the search space never asks for more than this without extending it."""

    model_config = {"frozen": True}

    models: tuple[str, ...]
    temperatures: tuple[float, ...] = (0.0, 0.8)
    n: int = Field(8, ge=1, le=256)  # samples per (model, temperature > 0); greedy pools hold one
    max_tokens: int = Field(512, ge=1)  # of samples and generated tests
    test_replies: int = Field(8, ge=1, le=64)  # gen_tests replies per (tests model, problem)
    tests_temperature: float = Field(0.6, ge=0, le=2)
    judge_max_tokens: int = Field(512, ge=1)  # rank's default
    repair_max_tokens: int = Field(768, ge=1)  # repair's default
    repair_rounds: int = Field(3, ge=0, le=10)  # the space's largest; 0 keeps repair out of it
    # models pooled greedy only and offered only as greedy generators (e.g. a slow large model): no sampled
    # pools, generated tests, judge or repair calls from them
    greedy_models: tuple[str, ...] = ()

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0 <= t <= 2 for t in value) or len(set(value)) != len(value):
            raise ValueError(f"temperatures must be distinct values in [0, 2], at least one; got {value}")
        return value

    def size(self, temperature: float) -> int:
        return 1 if temperature == 0 else self.n

    def temperatures_of(self, model: str) -> tuple[float, ...]:
        return tuple(t for t in self.temperatures if t == 0) if model in self.greedy_models else self.temperatures

    @property
    def helper_models(self) -> tuple[str, ...]:
        """Models that may sample, write tests, judge and repair."""
        return tuple(m for m in self.models if m not in self.greedy_models)

    @property
    def hot(self) -> tuple[float, ...]:
        return tuple(t for t in self.temperatures if t > 0)


@dataclass(frozen=True)
class Call:
    """The cost of one model call. `latency_s` is None when the response cache served it."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float | None
    cached: bool

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Answer:
    """A candidate as a technique would hold it, with the evidence replay needs (hashes stand for equality)."""

    text: str
    answer: str | None
    key: str | None  # behaviour key (vote's grouping); None casts no vote
    public_passed: bool | None  # None: the problem has no public checks
    public_score: float
    hidden_passed: bool
    distinct: str  # the kind's `distinct_key`: rank judges each distinct answer once
    show: str  # what a judge is shown
    call: Call

    @property
    def start(self) -> str:
        """The repair chain this answer starts: it depends on the answer only (on the text when there is none)."""
        return digest(f"a:{self.answer}" if self.answer is not None else f"t:{self.text}")


@dataclass(frozen=True)
class TestSet:
    """Generated tests of one (model, problem): per-reply calls, the deduplicated tests, and how many the first k replies give."""

    replies: tuple[Call, ...]
    tests: tuple[str, ...]
    prefix: tuple[int, ...]  # prefix[k] = number of tests from replies[:k]


@dataclass(frozen=True)
class Chain:
    """Repair attempts from one start, in round order; it ends at the first attempt that passes the public checks."""

    attempts: tuple[Answer, ...]
    rounds: int  # rounds it was built for


@dataclass(frozen=True)
class Cost:
    kind: str
    phase: str  # "pool" | "extension"
    stage: str  # "build" | "search": when it was generated
    call: Call


def digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def answer_hash(answer: str | None) -> str:
    return digest(answer or "")


@dataclass
class Info:
    """What is known about one answer of one problem (code keys depend on the answer only)."""

    key: str | None
    public_passed: bool | None
    public_score: float
    hidden_passed: bool


class PoolProgress(Protocol):
    """How `SamplePool.build` reports: one step per kind of work, advanced per finished problem."""

    def start(self, label: str, total: int) -> None: ...

    def advance(self) -> None: ...


def call_values(call: Call, phase: str, stage: str) -> tuple[Any, ...]:
    return (call.prompt_tokens, call.completion_tokens, call.latency_s, int(call.cached), phase, stage)


def key_hash(key: Any) -> str | None:
    return None if key is None else digest(repr(key))
