"""Tools, response_format and refused fields through `thinktank serve` over the real llama-server, openai SDK.

Model: the qwen2.5-coder-0.5b-instruct pack (its chat template has Qwen's tool-call format; llama-server runs its
jinja templates by default, and turns `response_format` into a grammar).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import openai
import pytest
from serve.live import LiveServer

from thinktank.arch import build_architecture
from thinktank.backends.llama_server import LlamaServer
from thinktank.engine import Engine
from thinktank.serve import ServeSettings, create_app

pytestmark = pytest.mark.integration

QWEN = "qwen2.5-coder-0.5b-instruct"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def qwen_server() -> Iterator[LlamaServer]:
    server = LlamaServer(QWEN, slots=2, ctx_per_slot=2048)
    asyncio.run(server.start())
    yield server
    server.terminate()


@pytest.fixture(scope="module")
def live(qwen_server: LlamaServer) -> Iterator[LiveServer]:
    @asynccontextmanager
    async def engine() -> AsyncIterator[Engine]:  # opened in the server's lifespan, on its loop
        async with qwen_server.backend() as backend:
            yield Engine({qwen_server.model: backend})

    specs: list[dict[str, Any]] = [
        {"name": "single", "layers": [{"generate": {"n": 1, "max_tokens": 48}}]},
        {"name": "moa-lite", "layers": [{"generate": {"n": 2, "max_tokens": 8}}, {"fuse": {"max_tokens": 8}}]},
    ]
    archs = [build_architecture(spec, [qwen_server.model]) for spec in specs]
    server = LiveServer(create_app(engine, archs, ServeSettings(use_cache=False, timeout_s=900))).start()
    try:
        yield server
    finally:
        server.stop()


def client(live: LiveServer) -> openai.OpenAI:
    return live.client(timeout=900)


def test_a_tool_call_round_trip(live: LiveServer):
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    named = {"type": "function", "function": {"name": "get_weather"}}
    first = client(live).chat.completions.create(model="single", messages=messages, tools=[WEATHER], tool_choice=named)  # type: ignore[arg-type]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather" and call.id
    assert isinstance(json.loads(call.function.arguments).get("city"), str)

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"city": "Paris", "sky": "sunny", "celsius": 21})},
    ]
    second = client(live).chat.completions.create(model="single", messages=messages, tools=[WEATHER], tool_choice="none")
    answer = second.choices[0]
    assert not answer.message.tool_calls and answer.message.content
    assert "21" in answer.message.content or "sunny" in answer.message.content.lower(), answer.message.content
    assert second.usage is not None and second.usage.prompt_tokens > first.usage.prompt_tokens  # type: ignore[union-attr]


def test_json_schema_output_parses_and_matches_the_schema(live: LiveServer):
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    response = client(live).chat.completions.create(
        model="single",
        messages=[{"role": "user", "content": "A person named Ann, aged 31, as JSON."}],
        response_format=response_format,  # type: ignore[arg-type]
    )
    person = json.loads(response.choices[0].message.content or "")
    assert set(person) == {"name", "age"} and isinstance(person["name"], str) and isinstance(person["age"], int)


def test_logprobs_is_a_400_with_the_reason(live: LiveServer):
    with pytest.raises(openai.BadRequestError) as caught:
        client(live).chat.completions.create(model="single", messages=[{"role": "user", "content": "hi"}], logprobs=True)
    body: dict[str, Any] = caught.value.body  # type: ignore[assignment]
    assert body["param"] == "logprobs" and "log-probabilities" in body["message"]


def test_tools_on_an_architecture_that_cannot_honour_them_is_a_400_naming_it(live: LiveServer):
    with pytest.raises(openai.BadRequestError) as caught:
        client(live).chat.completions.create(
            model="moa-lite",
            messages=[{"role": "user", "content": "weather?"}],
            tools=[WEATHER],  # type: ignore[list-item]
        )
    body: dict[str, Any] = caught.value.body  # type: ignore[assignment]
    assert "moa-lite" in body["message"] and "fuse" in body["message"] and body["code"] == "unsupported_by_architecture"
