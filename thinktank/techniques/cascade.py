"""`cascade`: answer with a cheap architecture, escalate to a costlier one only when unsure (FrugalGPT, Chen et al. 2023).

    - cascade:
        signal: vote_share
        thresholds: [0.75]
        stages:
          - layers: [{generate: {models: [qwen2.5-0.5b-instruct], n: 4, temperature: 0.8}}, {vote: {}}]
          - layers: [{generate: {models: [qwen2.5-3b-instruct], n: 4, temperature: 0.8}}, {vote: {}}]

Each stage is a sub-architecture in the YAML form of an architecture, built by the architecture builder (`arch.py`,
which knows the YAML form; this module does not import it) with the run's default models for any node that names
none — or with the cascade's own `models:` if it gives them. In Python, pass built architectures (anything shaped like
`Stage`). Stage i runs under the trace node `stage{i}`; if its confidence signal is below
`thresholds[i]` the next stage runs, and the last stage always answers. FrugalGPT learns a scorer for this decision;
here the signal is one already at hand, and the thresholds are plain parameters for a search to tune:

* `vote_share` — vote share of the leading answer group among the stage's candidates (`vote`'s grouping);
* `vote_margin` — the leader's vote share minus the runner-up's (1.0 when all agree, 0.0 on a tie);
* `public_pass` — fraction of the public checks the stage's top candidate passes (code asserts; SQL: runs and
  returns rows; 0.0 when the task has none);
* `judge_score` — the top candidate's score from the stage's last `rank` node, on that node's scale (0.0 if absent).

A stage that fails escalates too (its error is noted). If the budget runs out in a later stage, the last completed
stage's candidates are returned (noted as `budget_cut`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from thinktank.engine.engine import Context
from thinktank.tasks.base import TaskInput
from thinktank.techniques._equivalence import answer_keys
from thinktank.techniques.base import Candidate, Technique
from thinktank.techniques.rank import Rank
from thinktank.techniques.verify_exec import has_public_checks, public_check
from thinktank.techniques.vote import tally

Signal = Literal["vote_share", "vote_margin", "public_pass", "judge_score"]


class StageNode(Protocol):
    """One node of a stage, as the judge-score signal reads it (`arch.Node`)."""

    @property
    def name(self) -> str: ...
    @property
    def technique(self) -> Technique: ...


class StageResult(Protocol):
    """What a finished stage hands back (`arch.ArchResult`)."""

    @property
    def candidates(self) -> list[Candidate]: ...
    @property
    def budget_cut(self) -> bool: ...
    @property
    def error(self) -> str | None: ...


@runtime_checkable
class Stage(Protocol):
    """A built sub-architecture (`arch.Architecture`): the cascade runs it and never builds one itself."""

    @property
    def name(self) -> str: ...
    @property
    def layers(self) -> Sequence[Sequence[StageNode]]: ...
    @property
    def models(self) -> list[str]: ...
    async def run(self, task: TaskInput, ctx: Context) -> StageResult: ...


class Cascade(Technique):
    name = "cascade"
    #: parameters given in YAML as architectures, which the architecture builder builds before construction
    architecture_params: ClassVar[tuple[str, ...]] = ("stages",)

    def __init__(self, stages: Sequence[Stage], thresholds: list[float], signal: Signal = "vote_share") -> None:
        if len(stages) < 2:
            raise ValueError("a cascade needs at least two stages")
        if len(thresholds) != len(stages) - 1:
            raise ValueError(f"{len(stages)} stages need {len(stages) - 1} thresholds (the last stage always answers)")
        self.thresholds, self.signal = thresholds, signal
        self.stages: list[Stage] = list(stages)
        #: every model a stage may call, so `Architecture.models` (backends to start) sees them all
        self.models = list(dict.fromkeys(m for stage in self.stages for m in stage.models))

    async def measure(self, ctx: Context, task: TaskInput, stage: Stage, result: StageResult) -> float:
        """The confidence signal for one finished stage."""
        candidates = result.candidates
        if not candidates:
            return 0.0
        if self.signal in ("vote_share", "vote_margin"):
            votes = tally(await answer_keys(ctx, task, candidates), [0.0] * len(candidates))
            return votes.leader_share if self.signal == "vote_share" else votes.margin
        if self.signal == "public_pass":
            return (await public_check(ctx, task, candidates[0].answer)).score if has_public_checks(task) else 0.0
        rank_nodes = [n.name for layer in stage.layers for n in layer if isinstance(n.technique, Rank)]
        scores = [candidates[0].scores[name] for name in rank_nodes if name in candidates[0].scores]
        return scores[-1] if scores else 0.0

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        records: list[dict[str, Any]] = []
        ctx.node.notes.update(signal=self.signal, stages=records)
        answer: list[Candidate] = []
        answered: int | None = None
        for i, stage in enumerate(self.stages):
            stage_ctx = ctx.child(f"stage{i}")
            record: dict[str, Any] = {"stage": i, "architecture": stage.name}
            records.append(record)
            try:
                result = await stage.run(task, stage_ctx)
            except Exception as exc:  # a failed cheap stage is a reason to escalate, not to give up
                if i == len(self.stages) - 1:
                    raise
                record.update(error=f"{type(exc).__name__}: {exc}", usage=stage_ctx.usage.to_dict(), escalated=True)
                continue
            record["candidates"] = len(result.candidates)
            if result.budget_cut:
                record["error"] = result.error
                if not answer:
                    answer, answered = result.candidates, i
                ctx.node.notes.update(budget_cut=True, answered_by=answered)
                return answer
            answer, answered = result.candidates, i
            record["usage"] = stage_ctx.usage.to_dict()
            if i == len(self.stages) - 1:
                break
            value = await self.measure(ctx, task, stage, result)
            record.update(signal=round(value, 4), threshold=self.thresholds[i], escalated=value < self.thresholds[i])
            if value >= self.thresholds[i]:
                break
        ctx.node.notes["answered_by"] = answered
        return answer
