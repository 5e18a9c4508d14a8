"""`permute`: Mixture-of-Intervention — read the passages in several orders, vote, and debias passage utility.

    layers:
      - retrieve: {k: 5}
      - permute: {m: 6, final_call: false}

MoI (Snowflake, "Mixture-of-Intervention") runs the reader on permuted orders of the retrieved passages and
separates each passage's own utility from the bias of the position it sits in. Here:

* **orders** (`order_at`): the retriever's order is the prior, so order 0 is the identity; orders 1..k-1 are its
  cyclic shifts by 1..k-1 (a Latin square: every highly ranked passage moves through every position once, the
  design that separates passage from position best); orders k and later are random permutations seeded by
  (`seed`, index). The first m are used, so the choice is deterministic and a larger m extends a smaller one.
* **calls**: one `read` call per order (order i seeded `seed + i`, models dealt round-robin), all at once through
  the engine (which caps concurrency at the servers' slots).
* **aggregation**: answers are grouped by the kind's `answer_keys` and tallied with `vote.tally`, ties going to
  the retriever's order.
* **utility** (`debias`): the credit of passage p in order o is (order o's answer agrees with the vote winner) x
  (fraction of that answer's words found in p); a least-squares fit of credit = utility[p] + bias[position]
  (biases sum to 0) over all (order, passage) pairs gives a position-debiased utility per passage and the
  position bias. Both go into the node's notes, and the utilities into every returned candidate's scores
  (`<node>.utility[<passage id>]`).
* **final call** (`final_call: true`): the passages are re-ordered by utility, most useful first and last and the
  least useful in the middle (lost in the middle), and one more call answers; its candidate comes first.

`draw(ctx, task, candidates, start, count)` answers for orders start..start+count-1, so `adaptive` can sample
orders in waves (`generator:`) instead of plain samples.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Annotated

import numpy as np
from pydantic import Field

from thinktank._aio import gather_all
from thinktank.engine.engine import Context
from thinktank.problems import Passage
from thinktank.tasks.base import TaskInput
from thinktank.techniques._equivalence import answer_keys
from thinktank.techniques.base import Candidate, MaxTokens, Technique, Temperature
from thinktank.techniques.read import Read, passages_of
from thinktank.techniques.vote import tally

__all__ = ["Permute", "debias", "edges_first", "order_at"]


def order_at(index: int, k: int, seed: int = 0) -> list[int]:
    """Order `index` of k passages (passage indices by position): identity, cyclic shifts, then seeded shuffles."""
    if index == 0 or k <= 1:
        return list(range(k))
    if index < k:
        return [(pos + index) % k for pos in range(k)]
    order = list(range(k))
    random.Random(f"{seed}:{index}").shuffle(order)
    return order


def debias(credit: np.ndarray, orders: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of credit[o, p] = utility[p] + bias[position of p in order o], with sum(bias) = 0.

    Returns (utility per passage, bias per position). With one order (or any design that never moves a passage)
    passage and position are confounded and the minimum-norm solution splits the credit between them.
    """
    m, k = credit.shape
    design = np.zeros((m * k, 2 * k - 1))
    target = np.zeros(m * k)
    for o, order in enumerate(orders):
        for pos, p in enumerate(order):
            row = o * k + pos
            design[row, p] = 1.0
            if k > 1:  # sum-to-zero coding of the position effect: the last position is minus the others
                if pos < k - 1:
                    design[row, k + pos] = 1.0
                else:
                    design[row, k:] = -1.0
            target[row] = credit[o, p]
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    bias = np.append(coef[k:], -coef[k:].sum()) if k > 1 else np.zeros(1)
    return coef[:k], bias


def edges_first(utility: Sequence[float]) -> list[int]:
    """Passage indices by utility placed at the edges: best first, second best last, third second, ... (middle worst)."""
    ranked = sorted(range(len(utility)), key=lambda p: (-utility[p], p))
    front: list[int] = []
    back: list[int] = []
    for i, p in enumerate(ranked):
        (front if i % 2 == 0 else back).append(p)
    return front + back[::-1]


def _words(text: str | None) -> set[str]:
    return set(re.findall(r"\w+", (text or "").lower()))


def support(answer: str | None, passage: Passage) -> float:
    """The fraction of the answer's words that occur in the passage (title included): 0.0 with no answer."""
    words = _words(answer)
    return len(words & _words(f"{passage.title} {passage.text}")) / len(words) if words else 0.0


class Permute(Technique):
    name = "permute"

    def __init__(
        self,
        models: list[str],
        *,
        m: Annotated[int, Field(ge=1, le=64)] = 6,
        k: Annotated[int, Field(ge=1, le=100)] | None = None,
        final_call: bool = False,
        temperature: Temperature = 0.0,
        max_tokens: MaxTokens = 256,
        system: str | None = None,
        seed: int = 0,
    ) -> None:
        """`m` orders of the first `k` passages received (default: all); `final_call`: one more call by utility."""
        self.m, self.k, self.final_call, self.seed = m, k, final_call, seed
        self.reader = Read(models, n=1, temperature=temperature, max_tokens=max_tokens, system=system, seed=seed)
        self.models = self.reader.models

    async def _answer(self, ctx: Context, task: TaskInput, passages: Sequence[Passage], index: int) -> Candidate:
        model = self.models[index % len(self.models)]
        gen = self.reader.generator(models=[model], n=1, seed=self.seed + index)
        gen.name = self.name
        (candidate,) = await self.reader.read(ctx, task, passages, gen)
        return candidate

    async def draw(self, ctx: Context, task: TaskInput, candidates: list[Candidate], start: int, count: int) -> list[Candidate]:
        """Answers for orders start..start+count-1 of the input passages, one call each, all at once."""
        passages = passages_of(candidates)[: self.k]
        ctx.node.notes["passages"] = [p.id for p in passages]
        orders = [order_at(i, len(passages), self.seed) for i in range(start, start + count)]

        async def one(i: int, order: list[int]) -> Candidate:
            child = ctx.child(f"order{i}")
            child.node.notes.update(order=order, shown=[passages[p].id for p in order])
            return await self._answer(child, task, [passages[p] for p in order], i)

        return await gather_all(one(i, order) for i, order in zip(range(start, start + count), orders, strict=True))

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        passages = passages_of(candidates)[: self.k]
        ctx.node.notes["passages"] = [p.id for p in passages]
        if not passages:  # nothing to permute: one closed-book answer, as `read` gives
            ctx.node.notes["closed_book"] = "no passage candidates in the input: asked the question alone"
            return [await self._answer(ctx, task, [], 0)]
        answers = await self.draw(ctx, task, candidates, 0, self.m)
        orders = [order_at(i, len(passages), self.seed) for i in range(self.m)]
        keys = await answer_keys(ctx, task, answers)
        votes = tally(keys, [1.0 if i == 0 else 0.0 for i in range(len(answers))])  # ties: the retriever's order
        winner = keys[votes.groups[0][0]] if votes.groups else None
        credit = np.array(
            [[float(winner is not None and keys[o] == winner) * support(answers[o].answer, p) for p in passages]
             for o in range(len(answers))]
        )  # fmt: skip
        utility, bias = (np.round(v, 9) for v in debias(credit, orders))  # rounded: float noise breaks no tie
        for rank, group in enumerate(votes.groups):
            for i in group:
                answers[i].scores[self.name] = votes.share(rank)
        for i in votes.unkeyed:
            answers[i].scores[self.name] = 0.0
        ranked = [answers[i] for i in votes.order()]
        ctx.node.notes.update(
            votes.to_notes(keys),
            orders=orders,
            utility={p.id: round(float(u), 4) for p, u in zip(passages, utility, strict=True)},
            position_bias=[round(float(b), 4) for b in bias],
        )
        if self.final_call:
            final_order = edges_first([float(u) for u in utility])
            final_ctx = ctx.child("final")
            final_ctx.node.notes.update(order=final_order, shown=[passages[p].id for p in final_order])
            final = await self._answer(final_ctx, task, [passages[p] for p in final_order], self.m)
            final.scores[self.name] = 1.0
            ranked = [final, *ranked]
            ctx.node.notes["final_order"] = [passages[p].id for p in final_order]
        for candidate in ranked:
            candidate.scores.update({f"{self.name}.utility[{p.id}]": float(u) for p, u in zip(passages, utility, strict=True)})
        return ranked
