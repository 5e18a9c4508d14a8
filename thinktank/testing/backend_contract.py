"""The contract every `Backend` must pass, as a reusable test class (like optuna's `testing/pytest_storages.py`).

Subclass `BackendContract` in a `test_contract_*.py` module and provide two fixtures:

    backend         a healthy backend that answers any prompt for model "m"
    broken_backend  a backend whose every call fails for a reason outside thinktank
                    (server down, HTTP 5xx, garbage reply, ...); parametrize it to cover many

    from thinktank.testing import BackendContract

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend(self):
            return MyBackend(...)

        @pytest.fixture
        def broken_backend(self):
            return MyBackend(url_of_a_dead_server)

The engine relies on exactly these promises: n choices for n samples, non-negative
usage, failures raised as `BackendError` (so retry and reporting code sees one tree),
`stream` yielding text deltas and then one whole response, and `aclose()` safe to call
twice. The async tests carry `pytest.mark.asyncio`, so they run under pytest-asyncio in
strict mode too.
"""

from __future__ import annotations

import asyncio
import dataclasses

try:
    import pytest
except ImportError as exc:  # thinktank itself never imports this module; only a test suite does
    raise ImportError("thinktank.testing needs pytest and pytest-asyncio: pip install 'thinktank[dev]'") from exc

from thinktank.backends.base import Backend, Capabilities, StreamEvent
from thinktank.engine import Engine
from thinktank.exceptions import BackendError
from thinktank.types import BackendResponse, GenerationRequest

__all__ = ["BackendContract", "check_response", "collect_stream"]


def check_response(response: BackendResponse, n: int) -> None:
    """Assert what every backend's response must hold: n choices with their usage, non-negative counts."""
    assert isinstance(response, BackendResponse)
    assert len(response.choices) == n
    for choice in response.choices:
        assert isinstance(choice.text, str)
        assert isinstance(choice.finish_reason, str) and choice.finish_reason
        assert choice.completion_tokens >= 0
    assert response.prompt_tokens >= 0
    assert 0 <= response.cached_prompt_tokens <= response.prompt_tokens
    assert response.completion_tokens == sum(c.completion_tokens for c in response.choices)
    assert response.latency_s >= 0


async def collect_stream(backend: Backend, request: GenerationRequest) -> list[StreamEvent]:
    """Every event `backend.stream(request)` yields, in order."""
    return [event async for event in backend.stream(request)]


class BackendContract:
    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError("a contract test module must provide the `backend` fixture")

    @pytest.fixture
    def broken_backend(self) -> Backend:
        raise NotImplementedError("a contract test module must provide the `broken_backend` fixture")

    def test_declares_its_limits(self, backend: Backend) -> None:
        capabilities = backend.capabilities
        assert isinstance(capabilities, Capabilities)
        assert isinstance(capabilities.max_concurrency, int) and capabilities.max_concurrency >= 1
        assert isinstance(capabilities.supports_native_n, bool)
        assert isinstance(capabilities.seeded_native_n, bool)
        assert isinstance(capabilities.max_n_per_call, int) and capabilities.max_n_per_call >= 1
        assert isinstance(backend.name, str) and backend.name
        with pytest.raises(dataclasses.FrozenInstanceError):  # what the engine read stays true for the run
            capabilities.max_concurrency = 1  # type: ignore[misc]

    @pytest.mark.asyncio
    async def test_one_sample(self, backend: Backend) -> None:
        response = await backend.generate(GenerationRequest.from_prompt("what is two plus two", "m"))
        check_response(response, 1)
        assert response.prompt_tokens > 0  # a non-empty prompt costs something

    @pytest.mark.parametrize("n", [2, 5])
    @pytest.mark.asyncio
    async def test_n_samples_give_n_choices(self, backend: Backend, n: int) -> None:
        response = await backend.generate(GenerationRequest.from_prompt("name a prime", "m", n=n, temperature=0.8))
        check_response(response, n)

    @pytest.mark.asyncio
    async def test_failures_are_backend_errors(self, broken_backend: Backend) -> None:
        with pytest.raises(BackendError):
            await broken_backend.generate(GenerationRequest.from_prompt("hello", "m"))

    @pytest.mark.asyncio
    async def test_concurrent_calls_all_answer(self, backend: Backend) -> None:
        prompts = [f"question number {i}" for i in range(2 * backend.capabilities.max_concurrency)]
        responses = await asyncio.gather(*(backend.generate(GenerationRequest.from_prompt(p, "m")) for p in prompts))
        for response in responses:
            check_response(response, 1)

    @pytest.mark.asyncio
    async def test_engine_fans_out_over_it(self, backend: Backend) -> None:
        ctx = Engine({"m": backend}).context()
        completions = await ctx.generate(GenerationRequest.from_prompt("pick a number", "m", n=3, temperature=0.8))
        assert [c.sample_index for c in completions] == [0, 1, 2]
        assert ctx.usage.calls == (1 if backend.capabilities.supports_native_n else 3)
        assert ctx.usage.completion_tokens == sum(c.usage.completion_tokens for c in completions)
        assert all(call.status == "ok" for call in ctx.node.calls)

    @pytest.mark.asyncio
    async def test_stream_yields_deltas_then_the_whole_response(self, backend: Backend) -> None:
        events = await collect_stream(backend, GenerationRequest.from_prompt("count to three", "m"))
        *deltas, last = events
        assert all(isinstance(e.delta, str) and e.delta and e.response is None for e in deltas)
        assert last.response is not None and last.delta == ""
        check_response(last.response, 1)
        assert "".join(e.delta for e in deltas) == last.response.choices[0].text
        assert isinstance(last.usage_estimated, bool)

    @pytest.mark.asyncio
    async def test_stream_closed_early_leaves_the_backend_usable(self, backend: Backend) -> None:
        stream = backend.stream(GenerationRequest.from_prompt("tell a long story", "m"))
        first = await anext(stream)
        assert first.delta or first.response is not None
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator: closing it cancels the generation
        check_response(await backend.generate(GenerationRequest.from_prompt("hello", "m")), 1)

    @pytest.mark.asyncio
    async def test_stream_failures_are_backend_errors(self, broken_backend: Backend) -> None:
        with pytest.raises(BackendError):
            await collect_stream(broken_backend, GenerationRequest.from_prompt("hello", "m"))

    @pytest.mark.asyncio
    async def test_aclose_is_idempotent(self, backend: Backend) -> None:
        await backend.generate(GenerationRequest.from_prompt("hello", "m"))
        await backend.aclose()
        await backend.aclose()
        async with backend:  # exiting closes a third time
            pass
