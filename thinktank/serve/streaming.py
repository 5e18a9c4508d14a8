"""Streaming: get an architecture's final answer to the client as early as it exists, as OpenAI SSE chunks.

If the last layer is one `generate` node making one sample from one model (or one such `read`, the reader of
the retrieval presets), the architecture runs as usual with that node's one call streamed through
`Engine.stream`, delta by delta; otherwise the architecture runs to the end and the chosen answer goes out the
moment it is chosen. While the architecture works, an SSE comment (`: keep-alive`) goes out every `keepalive_s`
so clients and proxies keep the connection. The run happens in its own task; closing the stream (the client
went away) cancels that task and with it every outstanding backend call.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from thinktank.arch import Architecture, ArchResult, Node
from thinktank.engine.engine import Context
from thinktank.serve.errors import as_serve_error, error_body
from thinktank.serve.passthrough import Replies
from thinktank.serve.responses import answer_choices, check_answer, extension, finish_reason, message, usage_out
from thinktank.serve.wire import ChatCompletionChunk, ChunkChoice, Delta, ToolCallDelta
from thinktank.tasks.answers import extract
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, Technique
from thinktank.techniques.generate import Generate
from thinktank.techniques.read import Read

T = TypeVar("T")
E = TypeVar("E")
#: hands one event to whoever consumes the run (and waits while they are behind)
Emit = Callable[[E], Awaitable[None]]
KEEPALIVE = ": keep-alive\n\n"
DONE = "data: [DONE]\n\n"


@dataclass
class TextDelta:
    text: str


@dataclass
class RunFinished:
    result: ArchResult
    streamed: bool  # the answer's text already went out as deltas


Event = TextDelta | RunFinished


def streamable_tail(arch: Architecture) -> Node | None:
    """The last node, when it is one `generate` of one sample from one model that replaces the candidates, or one
    `read` of one sample from one model (retrieval QA: the generation over the passages the layers before found)."""
    last = arch.layers[-1]
    if len(last) != 1:
        return None
    technique = last[0].technique
    if isinstance(technique, Generate) and technique.n == 1 and len(technique.models) == 1 and not technique.keep_previous:
        return last[0]
    if isinstance(technique, Read) and technique.n == 1 and len(technique.models) == 1:
        return last[0]
    return None


class StreamedGenerate(Technique):
    """A tail `generate` node whose one call streams, each delta handed to `emit` as it arrives.

    It runs in the tail's place inside the architecture, so the architecture's own budget and `on_error`
    handling apply to it as to any node; it only remembers what already went out and how it failed,
    which a stream cannot take back.
    """

    def __init__(self, tail: Node, emit: Emit[TextDelta]) -> None:
        technique = tail.technique
        self.reader = technique if isinstance(technique, Read) else None
        generate = technique.generator() if isinstance(technique, Read) else technique
        assert isinstance(generate, Generate)
        self.generate = generate
        self.name, self.emit = tail.name, emit
        self.model = self.generate.models[0]
        self.parts: list[str] = []
        self.failure: Exception | None = None

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        if self.reader is not None:
            task = self.reader.ground(ctx, task, candidates)
        request = self.generate.request(task, self.model)
        try:
            async with contextlib.aclosing(ctx.engine.stream(request, ctx)) as deltas:
                async for text in deltas:
                    self.parts.append(text)
                    await self.emit(TextDelta(text))
        except Exception as exc:
            self.failure = exc
            raise
        text = "".join(self.parts)
        call = ctx.node.calls[-1]
        return [Candidate(text, extract(task, text), self.model, self.name, call.usage, cached=call.status == "cached")]


async def run_streaming(arch: Architecture, task: TaskInput, ctx: Context, emit: Emit[TextDelta]) -> RunFinished:
    """Run `arch`, its final generation's text going to `emit` delta by delta when it can."""
    tail = streamable_tail(arch)
    if tail is None:
        return RunFinished(await arch.run(task, ctx), streamed=False)
    streamed = StreamedGenerate(tail, emit)
    layers = [*arch.layers[:-1], [Node(tail.name, streamed, tail.on_error)]]
    result = await Architecture(arch.name, layers, arch.spec).run(task, ctx)
    if result.budget_cut:
        if streamed.parts:  # cut mid-answer: what went out is the answer so far
            partial = Candidate("".join(streamed.parts), None, streamed.model, tail.name)
            result = dataclasses.replace(result, answer=partial, candidates=[partial])
    elif streamed.failure is not None and (streamed.parts or not result.candidates):
        raise streamed.failure  # a skip cannot take streamed text back, nor pass on candidates there are none of
    return RunFinished(result, streamed=bool(streamed.parts))


_running: set[asyncio.Task[None]] = set()  # strong references until each run task has wound down


async def with_keepalive(
    produce: Callable[[Emit[T]], Awaitable[T]], interval_s: float, timeout_s: float | None
) -> AsyncIterator[T | None]:
    """Yield what `produce` (run in a task of its own) emits, then what it returns; None whenever `interval_s`
    passes without one.

    The whole run is bounded by `timeout_s` (TimeoutError). Closing this iterator cancels the task.
    """
    queue: asyncio.Queue[tuple[str, T | BaseException | None]] = asyncio.Queue(maxsize=64)

    async def emit(event: T) -> None:
        await queue.put(("event", event))

    async def pump() -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await emit(await produce(emit))
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
    replies: Replies | None = None  # the candidates' tool calls and reasoning, when the run keeps them

    def chunk(self, choices: list[ChunkChoice], **extra: object) -> str:
        chunk = ChatCompletionChunk(id=self.request_id, created=self.created, model=self.model, choices=choices, **extra)  # type: ignore[arg-type]
        return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"

    def text(self, index: int, text: str, *, first: bool = False) -> str:
        return self.chunk([ChunkChoice(index=index, delta=Delta(role="assistant" if first else None, content=text))])

    def answer(self, index: int, candidate: Candidate, *, first: bool, with_text: bool) -> list[str]:
        """A chosen answer at once: its reasoning, its text, its tool calls (whole, each with its index)."""
        whole = message(candidate, self.replies)
        deltas = []
        if whole.reasoning_content:
            deltas.append(Delta(reasoning_content=whole.reasoning_content))
        if with_text and (whole.content or not whole.tool_calls):
            deltas.append(Delta(content=whole.content or ""))
        if whole.tool_calls:
            calls = [ToolCallDelta(index=i, **call.model_dump()) for i, call in enumerate(whole.tool_calls)]
            deltas.append(Delta(tool_calls=calls))
        if deltas and first:
            deltas[0].role = "assistant"
        return [self.chunk([ChunkChoice(index=index, delta=d)]) for d in deltas]


async def sse_body(run: Callable[[Emit[Event]], Awaitable[Event]], fmt: ChunkFormat, *, keepalive_s: float,
                   timeout_s: float | None, started: float) -> AsyncIterator[str]:  # fmt: skip
    """The SSE stream of one chat completion (`run` emits the deltas and returns the `RunFinished`): role chunk,
    deltas (or the chosen answers), finish, usage, [DONE]."""
    yield fmt.text(0, "", first=True)
    finished: RunFinished | None = None
    try:
        async for event in with_keepalive(run, keepalive_s, timeout_s):
            if event is None:
                yield KEEPALIVE
            elif isinstance(event, TextDelta):
                yield fmt.text(0, event.text)
            else:
                finished = event
        assert finished is not None
        result = check_answer(finished.result)
        chosen = answer_choices(result, fmt.n, fmt.replies)
    except Exception as exc:
        yield f"data: {json.dumps(error_body(as_serve_error(exc)))}\n\n{DONE}"
        return
    for i, candidate in enumerate(chosen):
        if candidate is not None:
            for piece in fmt.answer(i, candidate, first=i > 0, with_text=not (finished.streamed and i == 0)):
                yield piece
    ext = extension(fmt.model, result, time.monotonic() - started)
    for i, candidate in enumerate(chosen):
        last = i == len(chosen) - 1 and not fmt.include_usage
        choice = ChunkChoice(index=i, delta=Delta(), finish_reason=finish_reason(result, candidate, fmt.replies))
        yield fmt.chunk([choice], thinktank=ext if last else None)
    if fmt.include_usage:
        yield fmt.chunk([], usage=usage_out(result), thinktank=ext)
    yield DONE
