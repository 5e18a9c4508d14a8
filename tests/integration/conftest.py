"""Fixtures that run the real llama-server with a real model (built/pulled on first use)."""

from __future__ import annotations

import asyncio

import pytest

from thinktank.backends.llama_server import LlamaServer
from thinktank.backends.llama_server import server_metrics as read_server_metrics

SMALL_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def small_server():
    """One server for the whole session; each test opens its own client in its own loop."""
    server = LlamaServer(SMALL_MODEL, slots=4, ctx_per_slot=1024)
    asyncio.run(server.start())
    yield server
    server.terminate()


def server_metrics(server: LlamaServer) -> dict[str, float]:
    """llama-server's Prometheus counters, e.g. `llamacpp:tokens_predicted_total`."""
    return read_server_metrics(server.base_url)
