"""`generate`: n samples from one or several models (an ensemble), all in parallel.

    Generate(models=["qwen2.5-coder-0.5b-instruct"], n=8, temperature=0.8)

Samples are seeded (sample i of a model uses seed + i) so runs are reproducible and the
response cache can reuse them; the engine spreads them over the backends' slots.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from thinktank._aio import gather_all
from thinktank.engine.engine import Context
from thinktank.tasks.answers import extract
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, MaxTokens, Technique, Temperature
from thinktank.types import GenerationRequest, Message


class Generate(Technique):
    name = "generate"

    def __init__(
        self,
        models: list[str],
        *,
        n: Annotated[int, Field(ge=1, le=256)] = 1,
        temperature: Temperature = 0.0,
        top_p: Annotated[float, Field(gt=0, le=1)] = 1.0,
        max_tokens: MaxTokens = 512,
        system: str | None = None,
        seed: int = 0,
        keep_previous: bool = False,
    ) -> None:
        if not models:
            raise ValueError("generate needs at least one model")
        self.models, self.n, self.temperature, self.top_p = models, n, temperature, top_p
        self.max_tokens, self.system, self.seed, self.keep_previous = max_tokens, system, seed, keep_previous

    def messages(self, task: TaskInput) -> list[Message]:
        messages = [{"role": "system", "content": self.system}] if self.system else []
        return [*messages, {"role": "user", "content": task.prompt}]

    def request(self, task: TaskInput, model: str) -> GenerationRequest:
        """The call `apply` makes to `model`; public so that serving streams the very same call."""
        return GenerationRequest(
            self.messages(task), model, n=self.n, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_tokens, seed=self.seed,
        )  # fmt: skip

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        async def sample(model: str) -> list[Candidate]:
            return [
                Candidate(c.text, extract(task, c.text), model, self.name, c.usage, cached=c.cached)
                for c in await ctx.generate(self.request(task, model))
            ]

        fresh = [c for batch in await gather_all(sample(m) for m in self.models) for c in batch]
        return [*candidates, *fresh] if self.keep_previous else fresh
