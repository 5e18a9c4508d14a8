"""`generate`: n samples from one or several models (an ensemble), all in parallel.

    Generate(models=["qwen2.5-coder-0.5b-instruct"], n=8, temperature=0.8)

Samples are seeded (sample i of a model uses seed + i) so runs are reproducible and the
response cache can reuse them; the engine spreads them over the backends' slots. Techniques that sample as
`generate` does on a prompt of their own (`program`, `read`, `adaptive`'s waves) compose a `Generate`, so their calls
are its calls; `draws` deals samples start..start+count-1 over the models, for `adaptive`'s waves.
"""

from __future__ import annotations

from collections.abc import Sequence

from thinktank._aio import gather_all
from thinktank.engine.engine import Context
from thinktank.tasks.answers import extract
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, MaxTokens, Samples, Technique, Temperature, TopP
from thinktank.types import GenerationRequest, Message


def deal(models: Sequence[str], start: int, count: int) -> dict[str, list[int]]:
    """Samples start..start+count-1 dealt round-robin over `models`: each model's own sample indices, in order
    (sample s is sample s // len(models) of model s % len(models))."""
    per_model: dict[str, list[int]] = {}
    for s in range(start, start + count):
        per_model.setdefault(models[s % len(models)], []).append(s // len(models))
    return per_model


class Generate(Technique):
    name = "generate"

    def __init__(
        self,
        models: list[str],
        *,
        n: Samples = 1,
        temperature: Temperature = 0.0,
        top_p: TopP = 1.0,
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

    def request(self, task: TaskInput, model: str, *, first: int = 0, n: int | None = None) -> GenerationRequest:
        """The call `apply` makes to `model` (public so that serving streams the very same call); with `first` and
        `n`, the call for that model's samples first..first+n-1 instead of 0..self.n-1."""
        return GenerationRequest(
            self.messages(task), model, n=self.n if n is None else n, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_tokens, seed=self.seed + first,
        )  # fmt: skip

    def draws(self, task: TaskInput, start: int, count: int) -> list[GenerationRequest]:
        """The calls for samples start..start+count-1 dealt round-robin over the models (`deal`), one per model."""
        return [self.request(task, m, first=idx[0], n=len(idx)) for m, idx in deal(self.models, start, count).items()]

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        async def sample(model: str) -> list[Candidate]:
            return [
                Candidate(c.text, extract(task, c.text), model, self.name, c.usage, cached=c.cached)
                for c in await ctx.generate(self.request(task, model))
            ]

        fresh = [c for batch in await gather_all(sample(m) for m in self.models) for c in batch]
        return [*candidates, *fresh] if self.keep_previous else fresh
