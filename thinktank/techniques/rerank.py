"""`rerank`: REBEL-style multi-criteria LLM reranking of retrieved passages ("Relevance Isn't All You Need").

    layers:
      - retrieve: {k: 10}
      - rerank: {keep: 5}              # criteria: multi (REBEL) or single (relevance only, the baseline)
      - read: {}

Call 1 (multi only): the model names up to `max_criteria` query-dependent secondary criteria (recency,
authority, specificity, ...) with weights, one `criterion: weight` per line. Unparsable lines are dropped and
weights are clipped to [0, 1]; with none left the ranking falls back to relevance alone (noted).
Calls 2..k+1: each passage is scored 0-10 on relevance and on every criterion, one call per passage (pointwise:
a 0.5B model follows "Relevance: 7" lines far more reliably than a listwise ranking), all at once. A missing
criterion line counts as 5 (neutral); a missing relevance line falls back to the reply's last score
(`parse_score`); a passage with no score at all keeps its retriever position after the scored ones.
The rank is the weighted sum, relevance weighing 1 and each criterion its weight, divided by the weights' sum.
`keep` truncates to the top passages. Candidates without a passage pass through after them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field

from thinktank._aio import gather_all
from thinktank.engine.engine import Context
from thinktank.kinds.base import clip
from thinktank.problems import Passage
from thinktank.tasks.base import TaskInput
from thinktank.techniques._prompting import judge_request, parse_score
from thinktank.techniques.base import Candidate, MaxTokens, Technique

__all__ = ["Rerank", "parse_criteria", "parse_criterion_scores"]

_CRITERION_LINE = re.compile(r"^\s*(?:[-*\d.)]+\s*)?\**([A-Za-z][A-Za-z \-]{1,30}?)\**\s*[:=\-]\s*\**\s*(\d+(?:\.\d+)?)\s*(%?)")
_NEUTRAL = 5.0


def parse_criteria(text: str, limit: int) -> dict[str, float]:
    """`criterion: weight` lines -> {criterion: weight in [0, 1]} (percentages and 0-10 scales rescaled), relevance dropped."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = _CRITERION_LINE.match(line)
        if not match:
            continue
        name = " ".join(match.group(1).lower().split())
        weight = float(match.group(2))
        weight = weight / 100 if match.group(3) or weight > 10 else weight / 10 if weight > 1 else weight
        if name == "relevance" or name in found or not 0 < weight <= 1:
            continue
        found[name] = weight
        if len(found) == limit:
            break
    return found


def parse_criterion_scores(text: str, criteria: list[str]) -> dict[str, float]:
    """{criterion: 0-10 score} for the criteria whose line is in `text` ("Relevance: 7", "- recency = 3/10")."""
    scores: dict[str, float] = {}
    for criterion in criteria:
        pattern = rf"{re.escape(criterion)}\**\s*(?:score)?\s*[:=\-]?\s*\**\s*(\d+(?:\.\d+)?)"
        values = [float(v) for v in re.findall(pattern, text, re.IGNORECASE) if 0 <= float(v) <= 10]
        if values:
            scores[criterion] = values[-1]
    return scores


class Rerank(Technique):
    name = "rerank"

    def __init__(
        self,
        model: str,
        *,
        criteria: Literal["multi", "single"] = "multi",
        keep: Annotated[int, Field(ge=1, le=100)] | None = None,
        max_criteria: Annotated[int, Field(ge=1, le=5)] = 3,
        max_tokens: MaxTokens = 96,
        seed: int = 0,
    ) -> None:
        self.model, self.criteria, self.keep, self.max_criteria = model, criteria, keep, max_criteria
        self.max_tokens, self.seed = max_tokens, seed

    async def pick_criteria(self, ctx: Context, task: TaskInput) -> dict[str, float]:
        prompt = (
            f"Question: {task.prompt.strip()}\n\n"
            f"Besides relevance, which criteria (at most {self.max_criteria}) should decide which passages best help "
            "answer this question? Examples: recency, authority, specificity, completeness.\n"
            "Give each a weight between 0 and 1, one per line, exactly like:\nspecificity: 0.5\nauthority: 0.3"
        )
        request = judge_request(self.model, prompt, temperature=0.0, max_tokens=self.max_tokens, seed=self.seed)
        (reply,) = await ctx.generate(request)
        ctx.node.notes["criteria_reply"] = clip(reply.text, 400)
        return parse_criteria(reply.text, self.max_criteria)

    async def score(self, ctx: Context, task: TaskInput, passage: Passage, criteria: list[str]) -> dict[str, float]:
        lines = "\n".join(f"{c.capitalize()}: <0-10>" for c in ["relevance", *criteria])
        prompt = (
            f"Question: {task.prompt.strip()}\n\nPassage:\n{clip(passage.text.strip(), 1500)}\n\n"
            f"Rate the passage from 0 to 10 on each line below (relevance: how much it helps answer the question). "
            f"Reply with exactly these lines:\n{lines}"
        )
        request = judge_request(self.model, prompt, temperature=0.0, max_tokens=self.max_tokens, seed=self.seed)
        (reply,) = await ctx.generate(request)
        ctx.node.notes["reply"] = clip(reply.text, 200)  # what the judge said, next to what was read from it
        scores = parse_criterion_scores(reply.text, ["relevance", *criteria])
        if "relevance" not in scores and (fallback := parse_score(reply.text, 0, 10)) is not None:
            scores["relevance"] = fallback
        return scores

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        passages = [c for c in candidates if c.passage is not None]
        others = [c for c in candidates if c.passage is None]
        weights: dict[str, float] = {}
        if self.criteria == "multi" and passages:
            weights = await self.pick_criteria(ctx.child("criteria"), task)
            if not weights:
                ctx.node.notes["criteria_fallback"] = "no criterion could be read: relevance only"
        names = list(weights)
        scored = await gather_all(
            self.score(ctx.child(f"passage{i}"), task, c.passage, names) for i, c in enumerate(passages) if c.passage
        )
        total_weight = 1.0 + sum(weights.values())
        totals: list[float | None] = []
        for c, scores in zip(passages, scored, strict=True):
            if "relevance" not in scores:
                totals.append(None)
                continue
            value = scores["relevance"] + sum(w * scores.get(n, _NEUTRAL) for n, w in weights.items())
            totals.append(value / total_weight)
            c.scores[self.name] = value / total_weight
        order = sorted(range(len(passages)), key=lambda i: (totals[i] is None, -(totals[i] or 0.0), i))
        kept = [passages[i] for i in order][: self.keep]
        ctx.node.notes.update(
            criteria={"relevance": 1.0, **weights},
            unscored=sum(t is None for t in totals),
            scores=[{"passage": c.passage.id, **s} for c, s in zip(passages, scored, strict=True) if c.passage],
            kept=[c.passage.id for c in kept if c.passage],
        )
        return [*kept, *others]
