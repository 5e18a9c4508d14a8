"""`vote`: self-consistency — the answer most samples agree on wins (Wang et al. 2022, arXiv:2203.11171).

    layers:
      - generate: {n: 8, temperature: 0.8}
      - vote: {}

Candidates are grouped by answer *equivalence by kind* (`_equivalence.answer_keys`: math by value, SQL by result,
code by behaviour on the public tests' inputs) and returned group by group, largest first, so the first candidate
is the winning group's representative. Ties between equal-sized groups go to the group with the best prior score
(the `prior` entry of `Candidate.scores` if named, else each candidate's best earlier score, e.g. a public-test pass
rate from `verify_exec`), then to the earliest candidate; members of a group are ordered the same way. Candidates
whose answer is missing or failed to run vote for nothing and come last. `scores[name]` is the vote share of a
candidate's group among all candidates.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from thinktank.engine.engine import Context
from thinktank.tasks.base import TaskInput
from thinktank.techniques._equivalence import answer_keys
from thinktank.techniques.base import Candidate, Technique

__all__ = ["Tally", "Vote", "prior_score", "tally"]


@dataclass
class Tally:
    """Groups of candidate indices, best group first (members best first), and those that cast no vote."""

    groups: list[list[int]]
    unkeyed: list[int]
    total: int

    def share(self, rank: int) -> float:
        return len(self.groups[rank]) / self.total if rank < len(self.groups) and self.total else 0.0

    @property
    def leader_share(self) -> float:
        return self.share(0)

    @property
    def margin(self) -> float:
        """Leader's share minus the runner-up's: 1.0 when all agree, 0.0 on a tie."""
        return self.share(0) - self.share(1)

    def order(self, representatives_only: bool = False) -> list[int]:
        if representatives_only:
            return [g[0] for g in self.groups] + self.unkeyed
        return [i for g in self.groups for i in g] + self.unkeyed

    def to_notes(self, keys: Sequence[Hashable | None]) -> dict[str, Any]:
        return {
            "groups": [{"size": len(g), "members": g, "key": repr(keys[g[0]])[:120]} for g in self.groups],
            "no_vote": self.unkeyed,
            "leader_share": round(self.leader_share, 4),
            "margin": round(self.margin, 4),
        }


def tally(keys: Sequence[Hashable | None], priors: Sequence[float]) -> Tally:
    """Group equal keys; rank groups by (size, best prior, earliest member), members by (prior, position)."""
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            members.setdefault(key, []).append(i)
    groups = [sorted(g, key=lambda i: (-priors[i], i)) for g in members.values()]
    groups.sort(key=lambda g: (-len(g), -priors[g[0]], min(g)))
    return Tally(groups, [i for i, key in enumerate(keys) if key is None], len(keys))


def prior_score(candidate: Candidate, prior: str | None, exclude: str) -> float:
    """The tie-breaking evidence a candidate already carries (0.0 when none)."""
    if prior is not None:
        return candidate.scores.get(prior, 0.0)
    return max((v for k, v in candidate.scores.items() if k != exclude), default=0.0)


class Vote(Technique):
    name = "vote"

    def __init__(self, *, prior: str | None = None, representatives_only: bool = False) -> None:
        """`prior`: a `scores` entry to break ties with; `representatives_only`: return one candidate per group."""
        self.prior, self.representatives_only = prior, representatives_only

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        if not candidates:
            return []
        keys = await answer_keys(ctx, task, candidates)
        result = tally(keys, [prior_score(c, self.prior, self.name) for c in candidates])
        for rank, group in enumerate(result.groups):
            for i in group:
                candidates[i].scores[self.name] = result.share(rank)
        for i in result.unkeyed:
            candidates[i].scores[self.name] = 0.0
        order = result.order(self.representatives_only)
        winner = result.groups[0][0] if result.groups else None
        ctx.node.notes.update(result.to_notes(keys), winner=winner, kind=task.kind)
        return [candidates[i] for i in order]
