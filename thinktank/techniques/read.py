"""`read`: answer from the retrieved passages, in the order they arrive (the reader of retrieval QA).

    layers:
      - retrieve: {k: 5}
      - read: {n: 1, temperature: 0.0}

The passage candidates of the previous layer (`Candidate.passage` set, as `retrieve` and `rerank` yield them)
are shown numbered [1]..[k] in the order received, then the question and the kind's answer format; the call is
`generate`'s (this technique composes a `Generate` on the grounded prompt, so sampling, seeding and caching are
the same). Candidates without a passage are ignored; with no passage at all the question is asked closed-book
(noted). The ids of the passages shown go in the node's notes (`passages`), which serving reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from thinktank.engine.engine import Context
from thinktank.kinds.base import clip
from thinktank.problems import Passage
from thinktank.tasks.base import TaskInput
from thinktank.techniques._prompting import format_instruction
from thinktank.techniques.base import Candidate, MaxTokens, Samples, Technique, Temperature, TopP
from thinktank.techniques.generate import Generate

__all__ = ["Read", "grounded_task", "passages_of"]

#: characters of one passage shown to the reader (small models have small windows)
PASSAGE_LIMIT = 1500


def passages_of(candidates: Sequence[Candidate]) -> list[Passage]:
    """The passages a retrieval step passed on, in the order received."""
    return [c.passage for c in candidates if c.passage is not None]


def grounded_prompt(task: TaskInput, passages: Sequence[Passage], limit: int = PASSAGE_LIMIT) -> str:
    """Passages numbered [1]..[k] in the given order, the question, the kind's answer format."""
    shown = "\n\n".join(
        f"[{i}] {p.title}\n{clip(p.text.strip(), limit)}" if p.title else f"[{i}] {clip(p.text.strip(), limit)}"
        for i, p in enumerate(passages, 1)
    )
    return (
        "Answer the question using the passages below.\n\n"
        f"{shown}\n\nQuestion: {task.prompt.strip()}\n\n{format_instruction(task)}"
    )


def grounded_task(task: TaskInput, passages: Sequence[Passage]) -> TaskInput:
    """`task` with its prompt replaced by the grounded one (the task itself is untouched; closed-book if none)."""
    return dataclasses.replace(task, prompt=grounded_prompt(task, passages)) if passages else task


class Read(Technique):
    name = "read"

    def __init__(
        self,
        models: list[str],
        *,
        k: Annotated[int, Field(ge=1, le=100)] | None = None,
        n: Samples = 1,
        temperature: Temperature = 0.0,
        top_p: TopP = 1.0,
        max_tokens: MaxTokens = 256,
        system: str | None = None,
        seed: int = 0,
    ) -> None:
        """`k`: read only the first k passages received (default: all)."""
        if not models:
            raise ValueError("read needs at least one model")
        self.models, self.k, self.n, self.temperature, self.top_p = models, k, n, temperature, top_p
        self.max_tokens, self.system, self.seed = max_tokens, system, seed

    def generator(self, *, models: list[str] | None = None, n: int | None = None, seed: int | None = None) -> Generate:
        """The `generate` this reader runs on the grounded prompt (`permute` asks for one per order)."""
        gen = Generate(
            models or self.models, n=n or self.n, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_tokens, system=self.system, seed=self.seed if seed is None else seed,
        )  # fmt: skip
        gen.name = self.name
        return gen

    async def read(
        self, ctx: Context, task: TaskInput, passages: Sequence[Passage], generator: Generate | None = None
    ) -> list[Candidate]:
        """Answer from `passages` in this order; the candidates' answers are extracted by the task's kind."""
        return await (generator or self.generator()).apply(ctx, grounded_task(task, passages), [])

    def ground(self, ctx: Context, task: TaskInput, candidates: Sequence[Candidate]) -> TaskInput:
        """The task asked over the passages of `candidates` (the first k); their ids go in the node's notes (serving
        streams a tail `read` through this too)."""
        passages = passages_of(candidates)[: self.k]
        ctx.node.notes["passages"] = [p.id for p in passages]
        if not passages:
            ctx.node.notes["closed_book"] = "no passage candidates in the input: asked the question alone"
        return grounded_task(task, passages)

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        return await self.generator().apply(ctx, self.ground(ctx, task, candidates), [])
