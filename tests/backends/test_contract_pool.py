"""PoolBackend obeys the backend contract: over in-process replicas, and over two OpenAI-compatible servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_openai_server import FakeOpenAIServer, Reply, unused_port

from thinktank.backends import OpenAICompatBackend, ScriptedBackend
from thinktank.backends.pool import PoolBackend, Replica, http_health
from thinktank.backends.retry import RetryPolicy
from thinktank.exceptions import BackendStatusError, BackendUnreachable
from thinktank.testing import BackendContract
from thinktank.types import GenerationRequest

FAST_RETRIES = RetryPolicy(max_retries=1, backoff_base_s=0.001, backoff_max_s=0.01)


def reply(request: GenerationRequest, index: int) -> str:
    return f"reply {index} to {request.messages[-1]['content']}"


class TestScriptedPoolContract(BackendContract):
    @pytest.fixture(params=[False, True], ids=["fan-out", "native-n"])
    def backend(self, request: pytest.FixtureRequest) -> PoolBackend:
        replicas = [Replica(ScriptedBackend(reply, supports_native_n=request.param, name=n), 2) for n in ("a", "b")]
        return PoolBackend("m", replicas, retry_policy=FAST_RETRIES)

    @pytest.fixture(params=["unreachable", "503"])
    def broken_backend(self, request: pytest.FixtureRequest) -> PoolBackend:
        def fail(request_: GenerationRequest, index: int) -> str:
            if request.param == "503":
                raise BackendStatusError("overloaded", 503, "scripted")
            raise BackendUnreachable("down", "scripted")

        replicas = [Replica(ScriptedBackend(fail, name=n), 2) for n in ("a", "b")]
        return PoolBackend("m", replicas, retry_policy=FAST_RETRIES, health_interval_s=60.0)


class TestHTTPPoolContract(BackendContract):
    @pytest.fixture
    async def backend(self, fake_server: FakeOpenAIServer) -> AsyncIterator[PoolBackend]:
        with FakeOpenAIServer() as second:
            replicas = [
                Replica(
                    OpenAICompatBackend(s.base_url, max_retries=0, max_concurrency=2),
                    2,
                    health=http_health(f"{s.base_url}/models"),
                )
                for s in (fake_server, second)
            ]
            async with PoolBackend("m", replicas, retry_policy=FAST_RETRIES) as pool:
                yield pool  # type: ignore[misc]

    @pytest.fixture(params=["not-listening", "always-503", "invalid-json"])
    async def broken_backend(self, request: pytest.FixtureRequest, fake_server: FakeOpenAIServer) -> AsyncIterator[PoolBackend]:
        urls = [f"http://127.0.0.1:{unused_port()}/v1", f"http://127.0.0.1:{unused_port()}/v1"]
        if request.param != "not-listening":
            fake_server.default = Reply(status=503) if request.param == "always-503" else Reply.invalid_json()
            urls[1] = fake_server.base_url
        replicas = [
            Replica(OpenAICompatBackend(u, max_retries=0, timeout_s=0.3), 2, health=http_health(f"{u}/models")) for u in urls
        ]
        async with PoolBackend("m", replicas, retry_policy=FAST_RETRIES, health_interval_s=60.0) as pool:
            yield pool  # type: ignore[misc]
