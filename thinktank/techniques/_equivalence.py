"""When two candidates give *the same answer*: the key that `vote`, `adaptive` and `cascade` group by.

    keys = await answer_keys(ctx, task, candidates)   # one hashable key per candidate, None = casts no vote

Equal keys mean equivalent answers; texts may differ freely. What "equivalent" means is the task kind's
(`TaskKind.answer_keys` in `thinktank.kinds`): the value of a math answer, the result rows of a query, the
behaviour of a program on the public tests' inputs, normalised free text.
"""

from __future__ import annotations

from collections.abc import Sequence

from thinktank.engine.engine import Context
from thinktank.kinds import Key, kind_of
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate

__all__ = ["Key", "answer_keys"]


async def answer_keys(
    ctx: Context, task: TaskInput, candidates: Sequence[Candidate], *, memo: dict[str, Key] | None = None
) -> list[Key]:
    """One key per candidate (None: no answer, or one that failed to run), with the run's shared verifiers.

    `memo` (answer -> key) lets a caller that votes repeatedly over a growing pool (`adaptive`) run each program
    only once; kinds use it only where a key depends on the answer alone (`TaskKind.keyed_by_answer`).
    """
    return await kind_of(task).answer_keys(ctx.resources, task, candidates, {} if memo is None else memo)
