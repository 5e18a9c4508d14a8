"""Streaming: get an architecture's final answer to the client as early as it exists, as OpenAI SSE chunks.

If the last layer is one `generate` node making one sample from one model, the earlier layers run as usual
and that last generation streams through `Engine.stream`, delta by delta; otherwise the architecture runs to
the end and the chosen answer goes out the moment it is chosen. While the architecture works, an SSE comment
(`: keep-alive`) goes out every `keepalive_s` so clients and proxies keep the connection. The run happens in
its own task; closing the stream (the client went away) cancels that task and with it every outstanding
backend call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

from thinktank.arch import Architecture, ArchResult, Node
from thinktank.engine.engine import Context
from thinktank.exceptions import BudgetExceeded
from thinktank.serve.errors import as_serve_error, error_body
from thinktank.serve.responses import check_answer, extension, finish_reason, top_choices, usage_out
from thinktank.serve.wire import ChatCompletionChunk, ChunkChoice, Delta
from thinktank.tasks.answers import extract
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate
from thinktank.techniques.generate import Generate
from thinktank.types import GenerationRequest

T = TypeVar("T")
KEEPALIVE = ": keep-alive\n\n"
DONE = "data: [DONE]\n\n"


@dataclass
class TextDelta:
    text: str


@dataclass
class RunFinished:
    result: ArchResult
    streamed: bool  # the answer's text already went out as deltas


def streamable_tail(arch: Architecture) -> Node | None:
    """The last node, when it is one `generate` of one sample from one model that replaces the candidates."""
    last = arch.layers[-1]
    if len(last) != 1:
        return None
    technique = last[0].technique
    if isinstance(technique, Generate) and technique.n == 1 and len(technique.models) == 1 and not technique.keep_previous:
        return last[0]
    return None


async def run_streaming(arch: Architecture, task: TaskInput, ctx: Context) -> AsyncIterator[TextDelta | RunFinished]:
    """Run `arch`, streaming its final generation when it can; the last event is always `RunFinished`."""
    tail = streamable_tail(arch)
    if tail is None:
        yield RunFinished(await arch.run(task, ctx), streamed=False)
        return
    before: list[Candidate] = []
    if len(arch.layers) > 1:
        head = await Architecture(arch.name, arch.layers[:-1], arch.spec).run(task, ctx)
        if head.budget_cut:
            yield RunFinished(head, streamed=False)
            return
        ctx.node.error = None  # the tail makes the answer: "no candidate yet" is not an error here
        before = head.candidates
    ctx.node.notes["architecture"] = arch.name
    generate = tail.technique
    assert isinstance(generate, Generate)
    node_ctx = ctx.child(tail.name)
    # the request Generate.apply would make
    request = GenerationRequest(
        generate.messages(task),
        generate.models[0],
        temperature=generate.temperature,
        top_p=generate.top_p,
        max_tokens=generate.max_tokens,
        seed=generate.seed,
    )
    parts: list[str] = []
    try:
        async with contextlib.aclosing(ctx.engine.stream(request, node_ctx)) as deltas:
            async for text in deltas:
                parts.append(text)
                yield TextDelta(text)
    except BudgetExceeded as exc:
        node_ctx.node.error, ctx.node.error = "budget exhausted", f"budget exhausted: {exc}"
        cut = [Candidate("".join(parts), None, request.model, tail.name)] if parts else before  # the best so far
        yield RunFinished(ArchResult(cut[0] if cut else None, cut, ctx.node, True, ctx.node.error), streamed=bool(parts))
        return
    except Exception as exc:
        node_ctx.node.error = f"{type(exc).__name__}: {exc}"
        if tail.on_error != "skip" or parts or not before:
            raise
        yield RunFinished(ArchResult(before[0], before, ctx.node), streamed=False)  # as a skipped node passes its input on
        return
    text = "".join(parts)
    call = node_ctx.node.calls[-1]
    answer = Candidate(text, extract(task, text), request.model, tail.name, call.usage, cached=call.status == "cached")
    yield RunFinished(ArchResult(answer, [answer], ctx.node), streamed=True)


_running: set[asyncio.Task[None]] = set()  # strong references until each run task has wound down


async def with_keepalive(events: AsyncIterator[T], interval_s: float, timeout_s: float | None) -> AsyncIterator[T | None]:
    """Re-yield `events` (consumed in a task of their own), and None whenever `interval_s` passes without one.

    The whole iteration is bounded by `timeout_s` (TimeoutError). Closing this iterator cancels the task.
    """
    queue: asyncio.Queue[tuple[str, T | BaseException | None]] = asyncio.Queue(maxsize=64)

    async def pump() -> None:
        try:
            async with asyncio.timeout(timeout_s):
                async for event in events:
                    await queue.put(("event", event))
            await queue.put(("end", None))
        except Exception as exc:
            await queue.put(("error", exc))

    task = asyncio.create_task(pump())
    _running.add(task)
    task.add_done_callback(_running.discard)
    try:
        while True:
            try:
                async with asyncio.timeout(interval_s):
                    kind, value = await queue.get()
            except TimeoutError:
                yield None
                continue
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class ChunkFormat:
    """What every chunk of one response shares."""

    request_id: str
    created: int
    model: str
    n: int
    include_usage: bool

    def chunk(self, choices: list[ChunkChoice], **extra: object) -> str:
        chunk = ChatCompletionChunk(id=self.request_id, created=self.created, model=self.model, choices=choices, **extra)  # type: ignore[arg-type]
        return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"

    def text(self, index: int, text: str, *, first: bool = False) -> str:
        return self.chunk([ChunkChoice(index=index, delta=Delta(role="assistant" if first else None, content=text))])


async def sse_body(events: AsyncIterator[TextDelta | RunFinished], fmt: ChunkFormat, *, keepalive_s: float,
                   timeout_s: float | None, started: float) -> AsyncIterator[str]:  # fmt: skip
    """The SSE stream of one chat completion: role chunk, deltas (or the chosen answers), finish, usage, [DONE]."""
    yield fmt.text(0, "", first=True)
    finished: RunFinished | None = None
    try:
        async for event in with_keepalive(events, keepalive_s, timeout_s):
            if event is None:
                yield KEEPALIVE
            elif isinstance(event, TextDelta):
                yield fmt.text(0, event.text)
            else:
                finished = event
        assert finished is not None
        result = check_answer(finished.result)
    except Exception as exc:
        yield f"data: {json.dumps(error_body(as_serve_error(exc)))}\n\n{DONE}"
        return
    chosen: list[Candidate | None] = [*top_choices(result, fmt.n)] or [None]
    for i, candidate in enumerate(chosen):
        if candidate is not None and not (finished.streamed and i == 0):
            yield fmt.text(i, candidate.text, first=i > 0)
    ext = extension(fmt.model, result, time.monotonic() - started)
    for i, candidate in enumerate(chosen):
        last = i == len(chosen) - 1 and not fmt.include_usage
        choice = ChunkChoice(index=i, delta=Delta(), finish_reason=finish_reason(result, candidate))
        yield fmt.chunk([choice], thinktank=ext if last else None)
    if fmt.include_usage:
        yield fmt.chunk([], usage=usage_out(result), thinktank=ext)
    yield DONE
