"""`adaptive`: self-consistency that stops sampling once the answer is settled.

    layers:
      - adaptive: {max_n: 16, wave: 4, stop_confidence: 0.95}

Adaptive-Consistency (Aggarwal et al. 2023, "Let's Sample Step by Step", arXiv:2305.11860): samples come in waves
(a wave's samples in parallel); after each wave the answers are grouped as `vote` groups them, and sampling stops
when the leader is unlikely to be overtaken: with `a` votes for the leader and `b` for the runner-up, the posterior
probability that the leader's share exceeds the runner-up's under a Beta(1 + a, 1 + b) model must reach
`stop_confidence` (their Beta stopping criterion). Four agreeing samples give 0.97; 3 to 1 gives 0.81.

Sample i of a model is drawn with seed `seed + i`, continuing across waves, so the samples are those a
`generate` with n = max_n would draw, and a rerun is served by the cache. With `first_pass` (code with public
tests), each wave's programs run the public asserts and sampling stops at the first that passes them all; passing
candidates then come first. `lookahead` launches that many waves ahead (more overlap, possibly wasted calls):
waves still running when sampling stops are cancelled. If the budget runs out after at least one wave, the
samples so far are voted on and returned. Candidates come back ordered like `vote`'s, with the same scores.

`generator:` replaces the plain samples by another technique's draws: one node (in the YAML form of an
architecture, built by `arch.py`) whose technique has `draw(ctx, task, candidates, start, count)`, as `permute`
has (orders start..start+count-1 of the input passages). Waves then ask it for draws instead of samples, with
the input candidates, and stop by the same rule:

    - adaptive:
        max_n: 10
        wave: 2
        generator: [{layers: [{permute: {}}]}]
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Protocol, runtime_checkable

from pydantic import Field

from thinktank._aio import first_error, gather_all
from thinktank.engine.engine import Context
from thinktank.exceptions import BudgetExceeded
from thinktank.kinds import kind_of
from thinktank.tasks.base import TaskInput
from thinktank.techniques._equivalence import Key, answer_keys
from thinktank.techniques.base import Candidate, MaxTokens, Samples, Technique, Temperature, TopP
from thinktank.techniques.cascade import Stage
from thinktank.techniques.generate import Generate, deal
from thinktank.techniques.verify_exec import public_check
from thinktank.techniques.vote import Tally, prior_score, tally
from thinktank.verifiers.base import Verdict


def leader_confidence(leader: int, runner_up: int) -> float:
    """P(p > 1/2) for p ~ Beta(1 + leader, 1 + runner_up), exactly: P(Binomial(leader + runner_up + 1, 1/2) <= leader)."""
    n = leader + runner_up + 1
    return sum(math.comb(n, j) for j in range(leader + 1)) / 2**n


@runtime_checkable
class WaveSource(Protocol):
    """A technique that can draw samples start..start+count-1 of a deterministic sequence (`permute`'s orders)."""

    async def draw(
        self, ctx: Context, task: TaskInput, candidates: list[Candidate], start: int, count: int
    ) -> list[Candidate]: ...


def wave_source(generator: Sequence[Stage]) -> WaveSource:
    """The technique of a one-node `generator` architecture, checked to have `draw`."""
    nodes = [node for stage in generator for layer in stage.layers for node in layer]
    if len(generator) != 1 or len(nodes) != 1 or not isinstance(nodes[0].technique, WaveSource):
        raise ValueError("adaptive's generator is one architecture of one node whose technique has draw() (e.g. permute)")
    return nodes[0].technique


class AdaptiveSample(Technique):
    name = "adaptive"
    #: parameters given in YAML as architectures, which the architecture builder builds before construction
    architecture_params: ClassVar[tuple[str, ...]] = ("generator",)

    def __init__(
        self,
        models: list[str],
        *,
        max_n: Samples = 16,
        wave: Samples = 4,
        temperature: Temperature = 0.8,
        top_p: TopP = 1.0,
        max_tokens: MaxTokens = 512,
        stop_confidence: Annotated[float, Field(gt=0, le=1)] = 0.95,
        first_pass: bool = False,
        lookahead: Annotated[int, Field(ge=0, le=16)] = 0,
        system: str | None = None,
        seed: int = 0,
        generator: Sequence[Stage] | None = None,
    ) -> None:
        if not models:
            raise ValueError("adaptive needs at least one model")
        self.source = wave_source(generator) if generator is not None else None
        if generator is not None:
            models = list(dict.fromkeys([*models, *(m for stage in generator for m in stage.models)]))
        self.models, self.max_n, self.wave, self.temperature, self.top_p = models, max_n, wave, temperature, top_p
        self.max_tokens, self.stop_confidence, self.first_pass = max_tokens, stop_confidence, first_pass
        self.lookahead, self.system, self.seed = lookahead, system, seed

    async def _wave(self, ctx: Context, task: TaskInput, k: int, inputs: list[Candidate]) -> list[Candidate]:
        """Global samples [k*wave, (k+1)*wave), dealt round-robin over the models, all requested at once."""
        if self.source is not None:
            start = k * self.wave
            return await self.source.draw(ctx, task, inputs, start, min(self.wave, self.max_n - start))
        start = k * self.wave
        per_model = deal(self.models, start, min(self.wave, self.max_n - start))
        gens = [
            Generate([model], n=len(idx), temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                     system=self.system, seed=self.seed + idx[0])
            for model, idx in per_model.items()
        ]  # fmt: skip
        for gen in gens:
            gen.name = self.name
        return [c for batch in await gather_all(g.apply(ctx, task, []) for g in gens) for c in batch]

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        waves = math.ceil(self.max_n / self.wave)
        check = self.first_pass and kind_of(task).public_pass_is_final(task)
        pool: list[Candidate] = []
        verdicts: dict[int, Verdict] = {}
        memo: dict[str, Key] = {}
        history: list[dict[str, Any]] = []
        stop = "max_n reached"
        last: tuple[int, list[Key], Tally] | None = None

        async def count_votes() -> tuple[int, list[Key], Tally]:
            keys = await answer_keys(ctx, task, pool, memo=memo)
            priors = [verdicts[i].score if check else prior_score(c, None, self.name) for i, c in enumerate(pool)]
            return len(pool), keys, tally(keys, priors)

        try:
            async with asyncio.TaskGroup() as group:
                pending: deque[asyncio.Task[list[Candidate]]] = deque()
                for k in range(min(1 + self.lookahead, waves)):
                    pending.append(group.create_task(self._wave(ctx.child(f"wave{k}"), task, k, candidates)))
                while pending:
                    fresh = await pending.popleft()
                    start, pool = len(pool), pool + fresh
                    if check:
                        new = await gather_all(public_check(ctx, task, c.answer) for c in fresh)
                        verdicts.update(enumerate(new, start))
                    last = await count_votes()
                    sizes = [len(g) for g in last[2].groups[:2]] + [0, 0]
                    confidence = leader_confidence(sizes[0], sizes[1])
                    history.append(
                        {"samples": len(pool), "leader": sizes[0], "runner_up": sizes[1], "confidence": round(confidence, 4)}
                    )
                    if check and any(v.passed for v in verdicts.values()):
                        stop = "a candidate passed all public tests"
                    elif confidence >= self.stop_confidence:
                        stop = f"leader settled: P(leader ahead) = {confidence:.3f} >= {self.stop_confidence}"
                    else:
                        launched = len(history) + len(pending)
                        if launched < waves:
                            pending.append(
                                group.create_task(self._wave(ctx.child(f"wave{launched}"), task, launched, candidates))
                            )
                        continue
                    for wave_task in pending:
                        wave_task.cancel()
                    break
        except BaseExceptionGroup as exc:
            error = first_error(exc)
            if not isinstance(error, BudgetExceeded) or not pool:
                raise error from None
            stop = f"budget exhausted: {error}"
        if last is None or last[0] != len(pool):
            last = await count_votes()
        _, keys, result = last
        for rank, members in enumerate(result.groups):
            for i in members:
                pool[i].scores[self.name] = result.share(rank)
        for i in result.unkeyed:
            pool[i].scores[self.name] = 0.0
        for i, verdict in verdicts.items():
            pool[i].verdicts[self.name] = verdict.to_dict()
        passed = {i for i, verdict in verdicts.items() if verdict.passed}
        order = sorted(result.order(), key=lambda i: i not in passed)  # stable: passing first, vote order otherwise
        ctx.node.notes.update(result.to_notes(keys), waves=len(history), samples=len(pool), stop_reason=stop, history=history)
        if self.first_pass and not check:
            ctx.node.notes["first_pass"] = "ignored: only code tasks with public tests can be checked"
        return [pool[i] for i in order]
