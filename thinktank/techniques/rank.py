"""`rank`: an LLM judge orders the candidates, best first (Archon's ranker; LLM-as-a-judge, Zheng et al. 2023).

    Rank(model="qwen2.5-coder-1.5b-instruct", mode="pairwise", top_k=2)

Modes: `pointwise` scores each distinct candidate 1-10 in its own call (all concurrent);
`pairwise` plays a tournament — round-robin for up to 4 candidates, else single
elimination, each round's matches concurrent — and controls the judge's position bias by
asking both orders (`debias="swap"`, a split verdict is a tie) or by a seeded random order
(`debias="random"`, the order is recorded); `listwise` asks once for an order
"[2] > [1] > [3]". `samples` > 1 asks each question several times and averages.

Candidates with the same answer are judged once and share the score; `scores[name]` is
higher-is-better (pointwise: mean 1-10, pairwise: wins or rounds survived, listwise:
count minus mean position). An unparseable pointwise score leaves no score and ranks last.
"""

from __future__ import annotations

import random
from itertools import combinations
from typing import Annotated, Any, Literal

from pydantic import Field

from thinktank._aio import gather_all
from thinktank.engine.engine import Context
from thinktank.tasks.base import TaskInput
from thinktank.techniques._prompting import (
    clip,
    complete_order,
    distinct_groups,
    judge_request,
    numbered,
    parse_choice,
    parse_ranking,
    parse_score,
    show,
)
from thinktank.techniques.base import Candidate, MaxTokens, Technique, Temperature
from thinktank.types import GenerationRequest

POINTWISE = """Rate how well the response solves the task, from 1 (wrong or useless) to 10 (fully correct).
Check correctness carefully.

Task:
{task}

Response:
{response}

Give a short assessment, then a final line "Score: N"."""

PAIRWISE = """Which response solves the task better? Judge correctness first, then clarity; their order does not matter.

Task:
{task}

Response A:
{a}

Response B:
{b}

Give a short reason, then a final line "Winner: A" or "Winner: B"."""

LISTWISE = """Rank the {k} responses to the task from best to worst. Judge correctness first, then clarity.

Task:
{task}

{responses}

Give a short reason, then a final line with every response, best first, like: Ranking: [2] > [1] > [3]"""

NOTE_CHARS = 300  # judge replies kept in the trace


class Rank(Technique):
    name = "rank"

    def __init__(
        self,
        model: str,
        *,
        mode: Literal["pointwise", "pairwise", "listwise"] = "pointwise",
        top_k: Annotated[int, Field(ge=1)] | None = None,
        temperature: Temperature = 0.0,
        max_tokens: MaxTokens = 512,
        samples: Annotated[int, Field(ge=1, le=32)] = 1,
        debias: Literal["swap", "random"] = "swap",
        seed: int = 0,
        max_chars: Annotated[int, Field(ge=100)] = 3000,
    ) -> None:
        self.model, self.mode, self.top_k, self.temperature, self.max_tokens = model, mode, top_k, temperature, max_tokens
        self.samples, self.debias, self.seed, self.max_chars = samples, debias, seed, max_chars

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        notes = ctx.node.notes
        notes["mode"] = self.mode
        if not candidates:
            notes["skipped"] = "no candidates"
            return []
        groups = distinct_groups(task, candidates)
        reps = [candidates[g[0]] for g in groups]
        notes["groups"] = groups
        if len(reps) == 1 and self.mode != "pointwise":
            notes["skipped"] = "one distinct candidate: nothing to compare"
            scores: list[float | None] = [None]
        else:
            judge = {"pointwise": self._pointwise, "pairwise": self._pairwise, "listwise": self._listwise}[self.mode]
            scores = await judge(ctx, task, reps, [g[0] for g in groups])
        order = sorted(range(len(reps)), key=lambda g: (scores[g] is None, -(scores[g] or 0.0), g))
        ranked = [i for g in order for i in groups[g]]
        by_candidate: list[float | None] = [None] * len(candidates)
        for group, score in zip(groups, scores, strict=True):
            for i in group:
                by_candidate[i] = score
                if score is not None:
                    candidates[i].scores[self.name] = score
        notes.update(scores=by_candidate, unscored=[g[0] for g, s in zip(groups, scores, strict=True) if s is None], order=ranked)
        return [candidates[i] for i in ranked][: self.top_k]

    def _request(self, prompt: str) -> GenerationRequest:
        return judge_request(
            self.model, prompt, temperature=self.temperature, max_tokens=self.max_tokens, n=self.samples, seed=self.seed
        )

    async def _ask(self, ctx: Context, prompt: str) -> list[str]:
        return [c.text for c in await ctx.generate(self._request(prompt))]

    async def _pointwise(self, ctx: Context, task: TaskInput, reps: list[Candidate], ids: list[int]) -> list[float | None]:
        prompts = [POINTWISE.format(task=task.prompt, response=show(task, c, self.max_chars)) for c in reps]
        replies = await gather_all(self._ask(ctx, p) for p in prompts)
        scores: list[float | None] = []
        for texts in replies:
            parsed = [s for s in map(parse_score, texts) if s is not None]
            scores.append(sum(parsed) / len(parsed) if parsed else None)
        ctx.node.notes["judge"] = [
            {"candidate": i, "replies": [clip(t, NOTE_CHARS) for t in texts]} for i, texts in zip(ids, replies, strict=True)
        ]
        return scores

    async def _pairwise(self, ctx: Context, task: TaskInput, reps: list[Candidate], ids: list[int]) -> list[float | None]:
        rng, log = random.Random(self.seed), list[dict[str, Any]]()
        ctx.node.notes.update(debias=self.debias, seed=self.seed, matches=log)

        async def match(mctx: Context, a: int, b: int, swap: bool) -> float:
            """a's share of the win: 1, 0, or 0.5 for a tie (split or unreadable verdicts)."""
            orders = [(a, b), (b, a)] if self.debias == "swap" else [(b, a) if swap else (a, b)]
            shown = {i: show(task, reps[i], self.max_chars) for i in (a, b)}
            prompts = [PAIRWISE.format(task=task.prompt, a=shown[x], b=shown[y]) for x, y in orders]
            replies = await gather_all(self._ask(mctx, p) for p in prompts)
            votes = {a: 0, b: 0}
            choices = []
            for (x, y), texts in zip(orders, replies, strict=True):
                for text in texts:
                    choice = parse_choice(text)
                    choices.append(choice)
                    if choice is not None:
                        votes[x if choice == "A" else y] += 1
            share = 1.0 if votes[a] > votes[b] else 0.0 if votes[b] > votes[a] else 0.5
            log.append({"pair": [ids[a], ids[b]], "orders": [[ids[x], ids[y]] for x, y in orders], "choices": choices,
                        "share_first": share, "judge": [clip(t, NOTE_CHARS) for texts in replies for t in texts]})  # fmt: skip
            return share

        if len(reps) <= 4:  # round-robin: every pair, all at once
            pairs = list(combinations(range(len(reps)), 2))
            shares = await gather_all(match(ctx, a, b, rng.random() < 0.5) for a, b in pairs)
            wins = [0.0] * len(reps)
            for (a, b), share in zip(pairs, shares, strict=True):
                wins[a] += share
                wins[b] += 1 - share
            return list(wins)
        alive, survived, round_no = list(range(len(reps))), [0.0] * len(reps), 0
        while len(alive) > 1:  # single elimination; a tie sends the earlier (higher prior) candidate on
            rctx = ctx.child(f"round{round_no}")
            pairs = [(alive[i], alive[i + 1]) for i in range(0, len(alive) - 1, 2)]
            shares = await gather_all(match(rctx, a, b, rng.random() < 0.5) for a, b in pairs)
            alive = [a if share >= 0.5 else b for (a, b), share in zip(pairs, shares, strict=True)] + alive[len(pairs) * 2 :]
            for x in alive:
                survived[x] += 1
            round_no += 1
        return list(survived)

    async def _listwise(self, ctx: Context, task: TaskInput, reps: list[Candidate], ids: list[int]) -> list[float | None]:
        prompt = LISTWISE.format(k=len(reps), task=task.prompt, responses=numbered(task, reps, self.max_chars))
        texts = await self._ask(ctx, prompt)
        positions = [0.0] * len(reps)
        parsed_orders = []
        for text in texts:
            parsed = parse_ranking(text, len(reps))
            parsed_orders.append([ids[i] for i in parsed])
            for position, i in enumerate(complete_order(parsed, len(reps))):
                positions[i] += position
        ctx.node.notes.update(parsed=parsed_orders, judge=[clip(t, NOTE_CHARS) for t in texts])
        return [len(reps) - p / len(texts) for p in positions]
