"""Fixtures that run the real llama-server with a real model (built/pulled on first use)."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from thinktank.backends.llama_server import LlamaServer

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
    text = httpx.get(f"http://{server.host}:{server.port}/metrics", timeout=5).text
    metrics = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:]+)\s+([0-9.eE+-]+)$", line)
        if match:
            metrics[match.group(1)] = float(match.group(2))
    return metrics
