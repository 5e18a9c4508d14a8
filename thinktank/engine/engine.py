"""The engine: every LLM call of thinktank goes through `Engine.generate`.

It owns what techniques must not re-implement: routing a model name to a backend,
the response cache with single-flight for concurrent identical misses (in this process by
a future per key; across processes through a shared cache's `lead`), fan-out of
`n` samples under a per-backend concurrency limit, budgets, and accounting into the
trace. Techniques receive a `Context` (engine + this query's budget + trace node).

    engine = Engine({"m": backend}, cache=ResponseCache(path))
    ctx = engine.context(Budget(max_tokens=4000))
    completions = await ctx.generate(GenerationRequest.from_prompt("2+2?", "m", n=4))
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from thinktank._aio import gather_all
from thinktank.backends.base import Backend, StreamEvent
from thinktank.engine.budget import Budget, BudgetTracker
from thinktank.engine.cache import CachedSample, SampleCache, cache_key
from thinktank.engine.resources import Resources
from thinktank.engine.slots import Slots
from thinktank.engine.trace import CallRecord, TraceNode
from thinktank.exceptions import BackendError, BudgetExceeded, UnknownModelError
from thinktank.models.packs import PACKS
from thinktank.types import BackendResponse, Completion, EmbeddingRequest, EmbeddingResponse, GenerationRequest
from thinktank.usage import PriceTable, Usage

_T = TypeVar("_T")


class Engine:
    def __init__(
        self,
        backends: Mapping[str, Backend],
        *,
        default_backend: Backend | None = None,
        cache: SampleCache | None = None,
        prices: PriceTable | None = None,
        resources: Resources | None = None,
    ) -> None:
        """`backends` maps model names to backends; `default_backend` serves any other name; `resources` holds the
        run's shared helpers (verifiers), made on first use."""
        self.resources = resources or Resources()
        self.backends = dict(backends)
        self.default_backend = default_backend
        self.cache = cache
        self.prices = prices or PriceTable()
        self._limits: dict[int, Slots] = {}
        self._in_flight: dict[str, asyncio.Future[Completion]] = {}

    def context(
        self, budget: Budget | None = None, *, name: str = "query", use_cache: bool = True, overrides: Overrides | None = None
    ) -> Context:
        return Context(self, BudgetTracker.start(budget), TraceNode(name), use_cache, overrides)

    async def aclose(self) -> None:
        """Close the run's shared resources (backends belong to whoever opened them)."""
        await self.resources.aclose()

    def backend_for(self, model: str) -> Backend:
        backend = self.backends.get(model, self.default_backend)
        if backend is None:
            raise UnknownModelError(model, list(self.backends), hint=_pack_hint(model))
        return backend

    def _limit(self, backend: Backend) -> Slots:
        key = id(backend)
        if key not in self._limits:
            self._limits[key] = Slots(backend.capabilities.max_concurrency)
        return self._limits[key]

    def effective_request(self, request: GenerationRequest, ctx: Context) -> GenerationRequest:
        """The request as this query would send it now: its overrides applied, max_tokens within the token budget."""
        if ctx.overrides is not None:
            request = ctx.overrides.apply(request)
        remaining = ctx.budget.remaining_tokens()
        if remaining is not None and remaining < request.max_tokens:
            request = request.with_(max_tokens=max(1, remaining))
        return request

    def cache_keys(self, request: GenerationRequest, ctx: Context) -> list[str]:
        """The response-cache key of each of the request's samples, as `generate` would look them up now.

        Ask before the call: the token budget the call spends can clamp a later request differently.
        """
        effective = self.effective_request(request, ctx)
        return [cache_key(effective, i) for i in range(effective.n)]

    def _prepare(self, request: GenerationRequest, ctx: Context) -> tuple[GenerationRequest, Backend]:
        """The request as this query may send it (see `effective_request`), and its backend."""
        request = self.effective_request(request, ctx)
        backend = self.backend_for(request.model)
        ctx.budget.check()
        return request, backend

    async def generate(self, request: GenerationRequest, ctx: Context) -> list[Completion]:
        """Return `request.n` completions, from the cache where possible, in sample order."""
        request, backend = self._prepare(request, ctx)
        use_cache = ctx.use_cache and self.cache is not None

        results: dict[int, Completion] = {}
        misses: list[int] = []
        waits: dict[int, asyncio.Future[Completion]] = {}
        keys = {i: cache_key(request, i) for i in range(request.n)} if use_cache else {}
        found = await self.cache.lookup(list(keys.values())) if use_cache else {}  # type: ignore[union-attr]
        for i in range(request.n):  # no await from here to the futures' registration: in-process single flight
            if use_cache:
                if keys[i] in found:
                    results[i] = self._cache_hit(request, i, found[keys[i]], ctx)
                    continue
                if keys[i] in self._in_flight:
                    waits[i] = self._in_flight[keys[i]]
                    continue
            misses.append(i)

        owned: dict[str, asyncio.Future[Completion]] = {}
        loop = asyncio.get_running_loop()
        for i in misses:
            if use_cache:
                owned[keys[i]] = self._in_flight[keys[i]] = loop.create_future()
        leading = [self._lead(backend, request, misses, keys, ctx)] if use_cache and misses else []
        calls = [self._call(backend, request, unit, ctx) for unit in self._units(backend, request, misses)] if not leading else []
        waiting = [self._await_leader(fut, request, i, keys[i], ctx) for i, fut in waits.items()]
        try:
            for batch in await gather_all([*leading, *calls, *waiting]):
                for completion in batch:
                    results[completion.sample_index] = completion
            for i in misses:
                if use_cache:
                    owned[keys[i]].set_result(results[i])
        finally:
            for key, fut in owned.items():
                if not fut.done():
                    fut.cancel()  # waiters see the owner gave up and make the call themselves
                self._in_flight.pop(key, None)
        return [results[i] for i in range(request.n)]

    async def _lead(
        self, backend: Backend, request: GenerationRequest, misses: list[int], keys: dict[int, str], ctx: Context
    ) -> list[Completion]:
        """Compute this process's misses as their only computer among every process sharing the cache.

        A shared cache's `lead` may wait for another process computing some of the keys and then find them
        cached; the rest are called here and written inside the lead, so that process's waiters find them. This
        coroutine depends on no other caller's future, so a lead never waits on something that waits on it.
        """
        assert self.cache is not None
        async with self.cache.lead([keys[i] for i in misses]) as lead:
            done = [self._cache_hit(request, i, lead.found[keys[i]], ctx) for i in misses if keys[i] in lead.found]
            todo = [i for i in misses if keys[i] not in lead.found]
            made = [c for batch in await gather_all(self._call(backend, request, unit, ctx)
                                                    for unit in self._units(backend, request, todo)) for c in batch]  # fmt: skip
            await lead.store(request.model, {keys[c.sample_index]: _to_cached(c) for c in made if _cacheable(c)})
        return done + made

    async def stream(self, request: GenerationRequest, ctx: Context) -> AsyncGenerator[str, None]:
        """Yield one sample's text as the backend generates it, accounted like a `generate` call with n=1.

        A cache hit yields the whole text at once; a finished stream is written to the cache. Closing the
        iterator early (or cancelling its consumer) closes the backend stream and records the call "cancelled".
        Identical concurrent streams are not merged (no single flight).
        """
        if request.n != 1:
            raise ValueError(f"Engine.stream makes one sample, got n={request.n}; use generate for several")
        request, backend = self._prepare(request, ctx)
        key = cache_key(request, 0) if ctx.use_cache and self.cache is not None else None
        hit = (await self.cache.lookup([key])).get(key) if key is not None and self.cache is not None else None
        if hit is not None:
            yield self._cache_hit(request, 0, hit, ctx).text
            return
        started = ctx.node.now()
        record = _call_record(request, backend.name, [0], started)
        ctx.node.calls.append(record)
        events = backend.stream(request)
        final: StreamEvent | None = None
        timer: asyncio.Timeout | None = None
        try:
            async with self._limit(backend).hold():
                ctx.budget.check()
                wall = ctx.budget.remaining_wall_s()
                deadline = None if wall is None else asyncio.get_running_loop().time() + wall
                while True:
                    async with asyncio.timeout_at(deadline) as timer:  # the wall budget, per event: never across a yield
                        event = await anext(events, None)
                    if event is None:
                        break
                    if event.delta:
                        yield event.delta
                    if event.response is not None:
                        final = event
        except BaseException as exc:
            _record_failure(record, ctx, exc, wall_expired=timer is not None and timer.expired())
            raise
        finally:
            await _aclose(events)
        if final is None or final.response is None or not final.response.choices:
            record.status, record.error = "error", "the stream ended without a final response"
            raise BackendError(f"{backend.name}: {record.error}")
        (completion,) = self._account(final.response, request.model, [0])
        record.usage, record.latency_s, record.ended_s = completion.usage, final.response.latency_s, ctx.node.now()
        record.finish_reasons = [completion.finish_reason]
        if final.usage_estimated:
            ctx.node.notes["usage_estimated"] = "the server reported no usage for a stream; completion tokens counted from it"
        ctx.budget.record(record.usage)
        if key is not None and _cacheable(completion):
            await self.cache.store(request.model, {key: _to_cached(completion)})  # type: ignore[union-attr]

    async def embed(self, request: EmbeddingRequest, ctx: Context) -> EmbeddingResponse:
        """Embed `request.texts` in one backend call, accounted in `ctx`'s trace node like a generation (prompt
        tokens, one call, latency, cost) and held to the query's budget; embeddings are not response-cached (a
        retriever keeps its own passage vectors)."""
        backend = self.backend_for(request.model)
        if not backend.capabilities.supports_embeddings:
            raise BackendError(f"backend {backend.name} (model {request.model!r}) does not serve embeddings", backend.name)
        ctx.budget.check()
        record = CallRecord(request.model, backend.name, [], Usage(), "ok", ctx.node.now(), 0.0, operation="embeddings")
        ctx.node.calls.append(record)
        response = await self._held(backend, 1, record, ctx, lambda: backend.embed(request))
        record.latency_s, record.ended_s = response.latency_s, ctx.node.now()
        record.usage = Usage(
            prompt_tokens=response.prompt_tokens,
            calls=1,
            cost_usd=self.prices.cost(request.model, response.prompt_tokens, 0),
            latency_s=response.latency_s,
        )
        ctx.budget.record(record.usage)
        return response

    def _units(self, backend: Backend, request: GenerationRequest, misses: list[int]) -> list[list[int]]:
        """Group missing sample indices into backend calls."""
        if not misses:
            return []
        if not backend.capabilities.supports_native_n or len(misses) == 1:
            return [[i] for i in misses]
        if request.seed is None:
            runs = [misses]
        elif backend.capabilities.seeded_native_n:  # a call covers consecutive samples: seeds s+i, s+i+1, …
            runs = [[misses[0]]]
            for i in misses[1:]:
                if i == runs[-1][-1] + 1:
                    runs[-1].append(i)
                else:
                    runs.append([i])
        else:
            return [[i] for i in misses]
        size = max(1, backend.capabilities.max_n_per_call)
        return [run[start : start + size] for run in runs for start in range(0, len(run), size)]

    async def _call(self, backend: Backend, request: GenerationRequest, indices: list[int], ctx: Context) -> list[Completion]:
        call_request = request.with_(n=len(indices))
        if request.seed is not None and (len(indices) == 1 or backend.capabilities.seeded_native_n):
            call_request = call_request.with_(seed=request.seed + indices[0])
        started = ctx.node.now()
        record = _call_record(request, backend.name, indices, started)
        ctx.node.calls.append(record)
        slots = len(indices) if backend.capabilities.seeded_native_n else 1  # llama-server runs each choice in a slot
        response = await self._held(backend, slots, record, ctx, lambda: backend.generate(call_request))
        record.latency_s, record.ended_s = response.latency_s, ctx.node.now()
        if len(response.choices) < len(indices):
            record.status = "error"
            record.error = f"asked for {len(indices)} choices, got {len(response.choices)}"
            raise BackendError(f"{backend.name} returned {record.error}; set supports_native_n=False for this server")
        completions = self._account(response, request.model, indices)
        record.usage = sum((c.usage for c in completions), Usage())
        record.finish_reasons = [c.finish_reason for c in completions]
        ctx.budget.record(record.usage)
        return completions

    async def _held(
        self, backend: Backend, slots: int, record: CallRecord, ctx: Context, call: Callable[[], Awaitable[_T]]
    ) -> _T:
        """`call()` once `slots` of the backend are ours, within what is left of the query's wall budget; a failure
        (the budget's too) is written on `record` before it propagates."""
        wall: float | None = None
        try:
            async with self._limit(backend).hold(slots):
                ctx.budget.check()
                wall = ctx.budget.remaining_wall_s()
                timeout = asyncio.timeout(wall)
                async with timeout:
                    return await call()
        except BaseException as exc:
            _record_failure(record, ctx, exc, wall_expired=wall is not None and timeout.expired())
            raise

    def _account(self, response: BackendResponse, model: str, indices: list[int]) -> list[Completion]:
        completions = []
        for position, (i, choice) in enumerate(zip(indices, response.choices, strict=False)):
            prompt = response.prompt_tokens if position == 0 else 0
            cached_prompt = response.cached_prompt_tokens if position == 0 else 0
            usage = Usage(
                prompt_tokens=prompt,
                completion_tokens=choice.completion_tokens,
                cached_prompt_tokens=cached_prompt,
                calls=1 if position == 0 else 0,
                cost_usd=self.prices.cost(model, prompt, choice.completion_tokens),
                latency_s=response.latency_s if position == 0 else 0.0,
            )
            completions.append(
                Completion(choice.text, model, i, choice.finish_reason, usage, tool_calls=choice.tool_calls,
                           reasoning=choice.reasoning)
            )  # fmt: skip
        return completions

    def _cache_hit(self, request: GenerationRequest, index: int, sample: CachedSample, ctx: Context) -> Completion:
        usage = Usage(cache_hits=1, saved_tokens=sample.prompt_tokens + sample.completion_tokens, saved_usd=sample.cost_usd)
        ctx.node.calls.append(
            CallRecord(request.model, "cache", [index], usage, "cached", ctx.node.now(), 0.0, [sample.finish_reason])
        )
        ctx.budget.record(usage)
        return Completion(sample.text, request.model, index, sample.finish_reason, usage, cached=True)

    async def _await_leader(
        self, fut: asyncio.Future[Completion], request: GenerationRequest, index: int, key: str, ctx: Context
    ) -> list[Completion]:
        """Share an identical call already in flight; if its owner gave up, compute the sample ourselves (as the
        lead across processes, so a shared cache still sees one computation, and the result is cached)."""
        try:
            leader = await asyncio.shield(fut)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if fut.cancelled() and not (current and current.cancelling()):  # the leader gave up, we did not
                return await self._lead(self.backend_for(request.model), request, [index], {index: key}, ctx)
            raise
        cost = leader.usage
        usage = Usage(cache_hits=1, saved_tokens=cost.total_tokens, saved_usd=cost.cost_usd)
        ctx.node.calls.append(
            CallRecord(request.model, "single-flight", [index], usage, "cached", ctx.node.now(), 0.0, [leader.finish_reason])
        )
        ctx.budget.record(usage)
        return [
            Completion(leader.text, leader.model, index, leader.finish_reason, usage, cached=True,
                       tool_calls=leader.tool_calls, reasoning=leader.reasoning)
        ]  # fmt: skip


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def _pack_hint(model: str) -> str | None:
    """For a model pack the engine was not opened with (e.g. a cascade's second model): how to serve it."""
    if model not in PACKS:
        return None
    pulled = "" if PACKS[model].is_pulled else f"it is not pulled: `thinktank models pull {model}`, then "
    return (
        f"{model!r} is a model pack this engine was not opened with; {pulled}"
        "open the engine with every model the architecture names (`Architecture.models`)"
    )


def _record_failure(record: CallRecord, ctx: Context, exc: BaseException, *, wall_expired: bool) -> None:
    """Mark a call that did not finish in the trace; the query's wall-time budget running out becomes BudgetExceeded."""
    record.ended_s = ctx.node.now()
    record.latency_s = record.ended_s - record.started_s
    if isinstance(exc, asyncio.CancelledError | GeneratorExit | TimeoutError):
        record.status, record.usage = "cancelled", Usage(cancelled_calls=1)
        if isinstance(exc, TimeoutError) and wall_expired:
            record.error = f"wall-time budget of {ctx.budget.budget.max_wall_s}s used up"
            raise BudgetExceeded(record.error, ctx.budget.spent + Usage()) from exc
    else:
        record.status, record.error = "error", f"{type(exc).__name__}: {exc}"


def _call_record(request: GenerationRequest, backend: str, indices: list[int], started: float) -> CallRecord:
    """A call's trace record before it runs, with the request parameters exported spans carry."""
    record = CallRecord(request.model, backend, indices, Usage(), "ok", started, 0.0)
    record.temperature, record.max_tokens = request.temperature, request.max_tokens
    return record


def _cacheable(completion: Completion) -> bool:
    """A cached sample keeps text and finish reason only: one with tool calls or reasoning is not stored (a hit
    would lose them); the cache key covers tools and response_format, so such a request never hits a plain answer."""
    return not completion.tool_calls and completion.reasoning is None


def _to_cached(completion: Completion) -> CachedSample:
    u = completion.usage
    return CachedSample(completion.text, completion.finish_reason, u.prompt_tokens, u.completion_tokens, u.cost_usd)


@dataclass(frozen=True)
class Overrides:
    """Per-query changes applied to every generation call of a context (a served request's options).

    `max_tokens` only ever lowers a call's limit; `stop` sequences are added to the call's own.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def apply(self, request: GenerationRequest) -> GenerationRequest:
        changes: dict[str, Any] = {}
        if self.max_tokens is not None and self.max_tokens < request.max_tokens:
            changes["max_tokens"] = self.max_tokens
        for name in ("temperature", "top_p", "seed"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)
        if self.stop:
            changes["stop"] = tuple(dict.fromkeys((*request.stop, *self.stop)))
        return request.with_(**changes) if changes else request


@dataclass
class Context:
    """What a technique holds for one query: the engine, the shared budget, its trace node."""

    engine: Engine
    budget: BudgetTracker
    node: TraceNode
    use_cache: bool = True
    overrides: Overrides | None = None  # e.g. a served request's max_tokens / temperature / seed / stop

    async def generate(self, request: GenerationRequest) -> list[Completion]:
        return await self.engine.generate(request, self)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        return await self.engine.embed(request, self)

    def child(self, name: str) -> Context:
        """A context for a sub-step: same budget, its own trace node."""
        return Context(self.engine, self.budget, self.node.child(name), self.use_cache, self.overrides)

    @property
    def usage(self) -> Usage:
        return self.node.usage

    @property
    def resources(self) -> Resources:
        """The run's shared helpers (the verifiers techniques run answers with), as `ctx.resources.get(PythonSandbox)`."""
        return self.engine.resources
