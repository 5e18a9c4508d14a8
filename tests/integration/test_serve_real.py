"""`thinktank serve` over the real llama-server (SmolLM2-135M), driven by the openai SDK.

Usage is checked against llama-server's own token counters: what the response reports is
exactly what the architecture's internal calls made the server generate.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from fake_openai_server import unused_port
from serve.live import LiveServer

from thinktank.arch import build_architecture, load_architecture
from thinktank.engine import Engine
from thinktank.serve import ServeSettings, create_app
from thinktank.types import GenerationRequest

from .conftest import SMALL_MODEL, server_metrics

pytestmark = pytest.mark.integration

USER = [{"role": "user", "content": "Name three colours."}]
PREDICTED = "llamacpp:tokens_predicted_total"


@contextmanager
def serving_real(small_server) -> Iterator[LiveServer]:
    @asynccontextmanager
    async def engine() -> AsyncIterator[Engine]:  # opened in the server's lifespan, on its loop
        async with small_server.backend() as backend:
            yield Engine({small_server.model: backend})

    single = build_architecture({"name": "single", "layers": [{"generate": {"n": 1, "max_tokens": 16}}]}, [small_server.model])
    vote = load_architecture("sample-8-vote", [small_server.model])
    live = LiveServer(create_app(engine, [single, vote], ServeSettings(use_cache=False))).start()
    try:
        yield live
    finally:
        live.stop()


def test_single_non_streaming_and_streaming(small_server):
    with serving_real(small_server) as live:
        client = live.client()
        before = server_metrics(small_server)[PREDICTED]
        response = client.chat.completions.create(model="single", messages=USER)
        middle = server_metrics(small_server)[PREDICTED]
        chunks = list(
            client.chat.completions.create(model="single", messages=USER, stream=True, stream_options={"include_usage": True})
        )
        after = server_metrics(small_server)[PREDICTED]
    assert response.choices[0].message.content.strip()
    assert response.usage.completion_tokens == middle - before and 0 < response.usage.completion_tokens <= 16
    assert response.usage.prompt_tokens > 0 and response.model_extra["thinktank"]["calls"] == 1
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces).strip()  # token by token, not one block
    usage = chunks[-1].usage
    assert usage.completion_tokens == after - middle and usage.prompt_tokens == response.usage.prompt_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_multi_call_preset_usage_is_the_sum_of_internal_calls(small_server):
    with serving_real(small_server) as live:
        before = server_metrics(small_server)[PREDICTED]
        response = live.client().chat.completions.create(model="sample-8-vote", messages=USER, max_tokens=12, n=2)
        after = server_metrics(small_server)[PREDICTED]
    extension = response.model_extra["thinktank"]
    assert extension["calls"] == 2  # the 8 samples in two calls of 4 (the server's slots); the vote makes no call
    assert response.usage.completion_tokens == after - before <= 8 * 12  # max_tokens capped every call
    nodes = extension["nodes"]
    assert sum(n["completion_tokens"] for n in nodes) == response.usage.completion_tokens
    assert sum(n["prompt_tokens"] for n in nodes) == response.usage.prompt_tokens > 0
    assert 1 <= len(response.choices) <= 2


async def test_closing_a_stream_stops_the_generation_on_the_server(small_server):
    """What a client disconnect comes down to: the engine closes the backend stream and llama-server stops."""
    request = GenerationRequest.from_prompt(
        "Write a long story.", small_server.model, max_tokens=900, extra_body={"ignore_eos": True}
    )  # ~10 s of tokens if it ran to the end
    async with small_server.backend() as backend:
        engine = Engine({small_server.model: backend})
        ctx = engine.context()
        received = 0
        async with aclosing(engine.stream(request, ctx)) as deltas:
            async for _ in deltas:
                received += 1
                if received == 5:
                    busy = server_metrics(small_server)["llamacpp:requests_processing"]
                    break
        closed = time.monotonic()
        while server_metrics(small_server)["llamacpp:requests_processing"] and time.monotonic() - closed < 5:
            time.sleep(0.05)  # polling the server's gauge
        idle_after = time.monotonic() - closed
    assert busy == 1 and idle_after < 3  # generation stopped long before its 900 tokens
    (call,) = ctx.node.calls
    assert call.status == "cancelled" and ctx.usage.cancelled_calls == 1


def llama_children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and "llama-server" in stat.with_name("cmdline").read_text():
                children.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return children


def test_serve_command_starts_and_stops_the_embedded_llama_server():
    port = unused_port()
    command = [sys.executable, "-m", "thinktank.cli", "serve", "-m", SMALL_MODEL, "--arch", "single", "--slots", "1",
               "--port", str(port), "--no-cache"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "THINKTANK_API_KEY"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)  # polling the child's readiness
        (llama,) = llama_children(process.pid)  # started in the lifespan
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "single", "messages": USER, "max_tokens": 8},
            timeout=60,
        )
        assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] > 0
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        assert "Application shutdown complete" in output
        assert not Path(f"/proc/{llama}").exists() or "zombie" in Path(f"/proc/{llama}/status").read_text().lower()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
