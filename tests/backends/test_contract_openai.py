"""OpenAICompatBackend, talking to the fake server over loopback, obeys the backend contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_openai_server import FakeOpenAIServer, Reply, unused_port

from thinktank.backends import OpenAICompatBackend
from thinktank.testing import BackendContract

FAILURES = {
    "not-listening": None,
    "always-503": Reply(status=503),
    "invalid-json": Reply.invalid_json(),
    "connection-reset": Reply(reset=True),
    "timeout": Reply(delay_s=2.0),
    "context-length": Reply.context_length(),
}


class TestOpenAICompatContract(BackendContract):
    @pytest.fixture(params=[True, False], ids=["native-n", "fan-out"])
    async def backend(self, request: pytest.FixtureRequest, fake_server: FakeOpenAIServer) -> AsyncIterator[OpenAICompatBackend]:
        fake_server.native_n = request.param
        async with OpenAICompatBackend(fake_server.base_url, supports_native_n=request.param, max_concurrency=4) as backend:
            yield backend

    @pytest.fixture(params=list(FAILURES))
    async def broken_backend(
        self, request: pytest.FixtureRequest, fake_server: FakeOpenAIServer
    ) -> AsyncIterator[OpenAICompatBackend]:
        failure = FAILURES[request.param]
        url = f"http://127.0.0.1:{unused_port()}/v1" if failure is None else fake_server.base_url
        if failure is not None:
            fake_server.default = failure
        async with OpenAICompatBackend(url, max_retries=1, backoff_base_s=0.001, timeout_s=0.3) as backend:
            yield backend
