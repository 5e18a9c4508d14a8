"""The contract every technique keeps, as a pytest class a technique's author subclasses (like `optuna.testing`).

    from thinktank.testing.technique_contract import TechniqueContract

    class TestBeamSearch(TechniqueContract):
        def make_technique(self):
            return BeamSearch(["m"], width=4)

The subclass gives `make_technique()`; it may override `task` (the input, a math question by default), `reply`
(what the scripted model answers) and `make_candidates()` (the previous layer's output). The checks run the
technique on a `ScriptedBackend` through the engine, the way an architecture runs it:

* the result is a list of `Candidate` (one result type);
* every model call goes through the engine, so it is in the trace and in the usage;
* the budget is respected: with it already used up no call reaches the backend, and a budget cut either ends
  the step with what it has or raises `BudgetExceeded` (the architecture then returns the best so far), never
  another error;
* two nodes of the technique in one layer do not see each other's scores or verdicts, and the previous layer's
  candidates are left as they were.

The tests are plain functions that drive their own event loop, so no pytest plug-in is needed.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Coroutine
from typing import Any, TypeVar

from thinktank.arch import Architecture, ArchResult, Node
from thinktank.backends.scripted import ScriptedBackend
from thinktank.engine.budget import Budget
from thinktank.engine.engine import Context, Engine
from thinktank.exceptions import BudgetExceeded
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, Technique
from thinktank.types import GenerationRequest
from thinktank.usage import Usage

__all__ = ["TechniqueContract"]

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class _Given(Technique):
    """The previous layer: hands fixed candidates to the layer under test."""

    def __init__(self, candidates: list[Candidate]) -> None:
        self.candidates = candidates

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        return self.candidates


class TechniqueContract:
    """Subclass with `make_technique()`; the `test_*` methods are the contract."""

    #: the model name the scripted backend serves (give the technique this model)
    model = "m"
    task = TaskInput("contract/1", "math", "What is 6*7? End with #### <number>.")

    def make_technique(self) -> Technique:
        raise NotImplementedError("a TechniqueContract subclass builds the technique under test")

    def reply(self, request: GenerationRequest, sample_index: int) -> str:
        """What the scripted model answers; override for a technique that parses a particular format."""
        return "Score: 8\nThe answer is 42.\n#### 42"

    def make_candidates(self) -> list[Candidate]:
        """The candidates the technique receives (a previous layer's output)."""
        return [Candidate("#### 42", "42", self.model, "given"), Candidate("#### 41", "41", self.model, "given")]

    # --- helpers ---------------------------------------------------------------------------------

    def _engine(self) -> tuple[ScriptedBackend, Engine]:
        backend = ScriptedBackend(self.reply)
        return backend, Engine({self.model: backend})

    def _named(self, name: str) -> Technique:
        technique = self.make_technique()
        technique.name = name
        return technique

    async def _apply(self, ctx: Context) -> list[Candidate]:
        return await self._named("under_test").apply(ctx.child("under_test"), self.task, self.make_candidates())

    # --- the contract ----------------------------------------------------------------------------

    def test_returns_a_list_of_candidates(self) -> None:
        _, engine = self._engine()
        result = _run(self._apply(engine.context()))
        assert isinstance(result, list) and all(isinstance(c, Candidate) for c in result), result

    def test_every_model_call_is_in_the_trace_and_the_usage(self) -> None:
        backend, engine = self._engine()
        ctx = engine.context(use_cache=False)
        _run(self._apply(ctx))
        recorded = [call for node in ctx.node.walk() for call in node.calls]
        assert len(recorded) == len(backend.requests), "a call bypassed the engine (not in the trace)"
        assert ctx.usage.calls == len(backend.requests)
        assert ctx.budget.spent.calls == len(backend.requests), "a call was not charged to the budget"

    def test_no_call_once_the_budget_is_used_up(self) -> None:
        backend, engine = self._engine()
        ctx = engine.context(Budget(max_calls=1))
        ctx.budget.record(Usage(calls=1))
        try:
            result = _run(self._apply(ctx))
        except BudgetExceeded:
            pass
        else:
            assert isinstance(result, list)
        assert backend.requests == [], "a call reached the backend after the budget was used up"

    def test_a_budget_cut_ends_the_step_or_raises_budget_exceeded(self) -> None:
        unlimited, engine = self._engine()
        _run(self._apply(engine.context()))
        backend, engine = self._engine()
        ctx = engine.context(Budget(max_calls=1))
        try:  # anything but BudgetExceeded propagates and fails the test
            result = _run(self._apply(ctx))
            assert isinstance(result, list) and all(isinstance(c, Candidate) for c in result)
        except BudgetExceeded as exc:
            assert exc.spent.calls >= 1
        assert len(backend.requests) <= max(1, len(unlimited.requests))

    def test_nodes_of_one_layer_do_not_share_candidates(self) -> None:
        given = self.make_candidates()
        before = [c.to_dict() for c in copy.deepcopy(given)]
        layer = [Node("a", self._named("a")), Node("b", self._named("b"))]
        architecture = Architecture("contract", [[Node("given", _Given(given))], layer])
        _, engine = self._engine()
        result: ArchResult = _run(architecture.run(self.task, engine.context()))
        assert [c.to_dict() for c in given] == before, "the previous layer's candidates were changed"
        for candidate in result.candidates:
            leaked = {"a", "b"} <= set(candidate.scores) or {"a", "b"} <= set(candidate.verdicts)
            assert not leaked, f"one node's candidate carries both nodes' results: {candidate.scores}"
