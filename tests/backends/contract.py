"""The contract every `Backend` must pass, as a reusable test class.

Subclass `BackendContract` in a `test_contract_*.py` module and provide two fixtures:

    backend         a healthy backend that answers any prompt for model "m"
    broken_backend  a backend whose every call fails for a reason outside thinktank
                    (server down, HTTP 5xx, garbage reply, ...); parametrize it to cover many

The engine relies on exactly these promises: n choices for n samples, non-negative
usage, failures raised as `BackendError` (so retry and reporting code sees one tree),
and `aclose()` safe to call twice.
"""

from __future__ import annotations

import asyncio

import pytest

from thinktank.backends.base import Backend
from thinktank.engine import Engine
from thinktank.exceptions import BackendError
from thinktank.types import BackendResponse, GenerationRequest


def check_response(response: BackendResponse, n: int) -> None:
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


class BackendContract:
    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError("a contract test module must provide the `backend` fixture")

    @pytest.fixture
    def broken_backend(self) -> Backend:
        raise NotImplementedError("a contract test module must provide the `broken_backend` fixture")

    def test_declares_its_limits(self, backend: Backend) -> None:
        assert isinstance(backend.max_concurrency, int) and backend.max_concurrency >= 1
        assert isinstance(backend.supports_native_n, bool)
        assert isinstance(backend.name, str) and backend.name

    async def test_one_sample(self, backend: Backend) -> None:
        response = await backend.generate(GenerationRequest.from_prompt("what is two plus two", "m"))
        check_response(response, 1)
        assert response.prompt_tokens > 0  # a non-empty prompt costs something

    @pytest.mark.parametrize("n", [2, 5])
    async def test_n_samples_give_n_choices(self, backend: Backend, n: int) -> None:
        response = await backend.generate(GenerationRequest.from_prompt("name a prime", "m", n=n, temperature=0.8))
        check_response(response, n)

    async def test_failures_are_backend_errors(self, broken_backend: Backend) -> None:
        with pytest.raises(BackendError):
            await broken_backend.generate(GenerationRequest.from_prompt("hello", "m"))

    async def test_concurrent_calls_all_answer(self, backend: Backend) -> None:
        prompts = [f"question number {i}" for i in range(2 * backend.max_concurrency)]
        responses = await asyncio.gather(*(backend.generate(GenerationRequest.from_prompt(p, "m")) for p in prompts))
        for response in responses:
            check_response(response, 1)

    async def test_engine_fans_out_over_it(self, backend: Backend) -> None:
        ctx = Engine({"m": backend}).context()
        completions = await ctx.generate(GenerationRequest.from_prompt("pick a number", "m", n=3, temperature=0.8))
        assert [c.sample_index for c in completions] == [0, 1, 2]
        assert ctx.usage.calls == (1 if backend.supports_native_n else 3)
        assert ctx.usage.completion_tokens == sum(c.usage.completion_tokens for c in completions)
        assert all(call.status == "ok" for call in ctx.node.calls)

    async def test_aclose_is_idempotent(self, backend: Backend) -> None:
        await backend.generate(GenerationRequest.from_prompt("hello", "m"))
        await backend.aclose()
        await backend.aclose()
        async with backend:  # exiting closes a third time
            pass
