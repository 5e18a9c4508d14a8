"""run_streaming (which architectures stream their last generation) and the keep-alive pump, without HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from thinktank.arch import build_architecture
from thinktank.backends import StreamEvent
from thinktank.engine import Budget, Engine
from thinktank.exceptions import BackendUnreachable
from thinktank.serve.streaming import RunFinished, TextDelta, run_streaming, streamable_tail, with_keepalive
from thinktank.tasks.base import TaskInput
from thinktank.types import GenerationRequest

from .conftest import WordStreamBackend

TASK = TaskInput("q", "text", "say something")


def arch(*layers: Any):
    return build_architecture({"name": "a", "layers": list(layers)}, ["m"])


@pytest.mark.parametrize(
    ("layers", "streams"),
    [
        ([{"generate": {}}], True),
        ([{"generate": {"n": 4}}, {"vote": {}}, {"generate": {"n": 1}}], True),
        ([{"generate": {"n": 2}}], False),
        ([{"generate": {"n": 4}}, {"vote": {}}], False),
        ([{"generate": {"keep_previous": True}}], False),
        ([{"generate": {"models": ["m", "m2"]}}], False),
        ([[{"generate": {}}, {"generate": {}}]], False),
    ],
)
def test_which_architectures_stream(layers, streams):
    assert (streamable_tail(arch(*layers)) is not None) == streams


async def events(architecture, backend, budget: Budget | None = None) -> tuple[list[str], RunFinished, Any]:
    ctx = Engine({"m": backend}).context(budget)
    out: list[Any] = []

    async def emit(event: TextDelta) -> None:
        out.append(event)

    finished = await run_streaming(architecture, TASK, ctx, emit)
    assert all(isinstance(e, TextDelta) for e in out) and isinstance(finished, RunFinished)
    return [e.text for e in out], finished, ctx


async def test_earlier_layers_run_then_the_last_generation_streams():
    backend = WordStreamBackend(lambda r, i: f"reply number {i}")
    deltas, finished, ctx = await events(
        arch({"generate": {"n": 2}}, {"generate": {"temperature": 0.3, "name": "final"}}), backend
    )
    assert len(backend.requests) == 3 and backend.requests[-1].temperature == 0.3
    assert deltas == ["reply ", "number ", "2"] and finished.streamed
    assert finished.result.answer.text == "reply number 2" and finished.result.answer.node == "final"
    assert [n.name for n in ctx.node.children] == ["generate0", "final"] and finished.result.usage.calls == 3


async def test_a_non_streamable_architecture_sends_its_answer_at_the_end():
    deltas, finished, _ = await events(arch({"generate": {"n": 3}}, {"vote": {}}), WordStreamBackend(lambda r, i: "same"))
    assert deltas == [] and not finished.streamed and finished.result.answer.text == "same"


async def test_a_skipped_failing_tail_passes_the_earlier_candidates_on():
    def handler(request, i):
        if request.temperature == 0.5:
            raise BackendUnreachable("down")
        return "from the head"

    layers = ({"generate": {}}, {"generate": {"temperature": 0.5, "on_error": "skip"}})
    deltas, finished, _ = await events(arch(*layers), WordStreamBackend(handler))
    assert deltas == [] and finished.result.answer.text == "from the head"


async def test_the_streamed_call_is_the_one_generate_makes():
    spec = {"generate": {"temperature": 0.4, "max_tokens": 33, "seed": 5, "system": "be brief"}}
    streamed, plain = WordStreamBackend(lambda r, i: "hi"), WordStreamBackend(lambda r, i: "hi")
    await events(arch(spec), streamed)
    await arch(spec).run(TASK, Engine({"m": plain}).context())
    assert streamed.requests == plain.requests == [arch(spec).layers[0][0].technique.request(TASK, "m")]


class BreaksMidStream(WordStreamBackend):
    """The tail's call (temperature 0.5) streams one word, then fails with `error` or, without one, hangs."""

    def __init__(self, error: Exception | None = None) -> None:
        super().__init__(lambda r, i: "from the head")
        self.error = error

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        if request.temperature != 0.5:
            async for event in super().stream(request):
                yield event
            return
        yield StreamEvent(delta="partial ")
        if self.error is not None:
            raise self.error
        await asyncio.Event().wait()  # until the wall budget cuts the call


TAIL = {"generate": {"temperature": 0.5, "on_error": "skip"}}


async def test_a_budget_cut_mid_stream_answers_with_what_went_out():
    deltas, finished, _ = await events(arch({"generate": {}}, TAIL), BreaksMidStream(), Budget(max_wall_s=0.3))
    assert deltas == ["partial "] and finished.streamed and finished.result.budget_cut
    assert finished.result.answer.text == "partial " and finished.result.answer.node == "generate1"
    assert finished.result.candidates == [finished.result.answer]


async def test_a_skipped_tail_that_failed_after_streaming_still_fails():
    with pytest.raises(BackendUnreachable):  # the streamed words cannot be taken back
        await events(arch({"generate": {}}, TAIL), BreaksMidStream(BackendUnreachable("down")))


async def test_a_skipped_tail_with_nothing_to_pass_on_fails():
    def handler(request, i):
        raise BackendUnreachable("down")

    with pytest.raises(BackendUnreachable):
        await events(arch(TAIL), WordStreamBackend(handler))


async def test_keepalive_yields_none_while_waiting_and_times_out():
    async def slow(emit):
        await asyncio.sleep(0.25)
        return "late"

    seen = [e async for e in with_keepalive(slow, 0.05, timeout_s=5)]
    assert seen[-1] == "late" and seen.count(None) >= 2
    with pytest.raises(TimeoutError):
        async for _ in with_keepalive(slow, 0.05, timeout_s=0.1):
            pass
