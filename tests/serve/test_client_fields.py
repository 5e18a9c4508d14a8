"""Tools, response_format, reasoning and refused fields through `thinktank serve`, over the fake OpenAI server.

The backend is the real `OpenAICompatBackend` over HTTP, so the payload builder and both parsers (plain and SSE)
are on the path; the client is the official openai SDK.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import openai
import pytest

from thinktank.arch import build_architecture
from thinktank.backends.openai_compat import OpenAICompatBackend
from thinktank.engine import Engine
from thinktank.serve import ServeSettings, create_app
from thinktank.testing import FakeOpenAIServer

from .live import LiveServer

MODEL = "m"
SPECS: dict[str, dict[str, Any]] = {
    "single": {"name": "single", "layers": [{"generate": {"n": 1, "max_tokens": 64}}]},
    "vote-4": {"name": "vote-4", "layers": [{"generate": {"n": 4, "temperature": 0.8}}, {"vote": {}}]},
    "moa-lite": {"name": "moa-lite", "layers": [{"generate": {"n": 2}}, {"fuse": {}}]},
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
USER = [{"role": "user", "content": "What is the weather in Paris?"}]


def call(name: str, arguments: str, id: str = "call_1") -> dict[str, Any]:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


@contextmanager
def serving(message_for: Callable[[dict[str, Any], int], dict[str, Any]]) -> Iterator[tuple[LiveServer, FakeOpenAIServer]]:
    with FakeOpenAIServer(message_for=message_for) as fake:

        @asynccontextmanager
        async def engine() -> AsyncIterator[Engine]:  # opened on the server's loop
            async with OpenAICompatBackend(fake.base_url, max_retries=0, seeded_native_n=True) as backend:
                yield Engine({MODEL: backend})

        archs = [build_architecture(spec, [MODEL]) for spec in SPECS.values()]
        live = LiveServer(create_app(engine, archs, ServeSettings(use_cache=False, keepalive_s=0.05))).start()
        try:
            yield live, fake
        finally:
            live.stop()


def weather_or_answer(body: dict[str, Any], i: int) -> dict[str, Any]:
    """Calls get_weather until the conversation holds its result, then answers from it."""
    results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
    if results:
        return {"content": f"It is {json.loads(results[-1])['sky']} in Paris."}
    return {"content": None, "tool_calls": [call("get_weather", '{"city": "Paris"}', id=f"call_{i}")]}


def test_tool_round_trip_on_a_single_generate():
    with serving(weather_or_answer) as (live, fake):
        client = live.client()
        first = client.chat.completions.create(model="single", messages=USER, tools=[WEATHER], tool_choice="auto")
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (tool_call,) = choice.message.tool_calls or []
        assert tool_call.type == "function" and tool_call.function.name == "get_weather"
        assert json.loads(tool_call.function.arguments) == {"city": "Paris"}
        sent = fake.chat_requests[-1].body
        assert (
            sent["tools"] == [WEATHER]
            and sent["tool_choice"] == "auto"
            and sent["messages"] == [{"role": "user", "content": USER[0]["content"]}]
        )

        turns = [
            *USER,
            {"role": "assistant", "content": None, "tool_calls": [tool_call.model_dump()]},
            {"role": "tool", "tool_call_id": tool_call.id, "content": '{"sky": "sunny"}'},
        ]
        second = client.chat.completions.create(model="single", messages=turns, tools=[WEATHER])  # type: ignore[arg-type]
        assert second.choices[0].message.content == "It is sunny in Paris."
        assert second.choices[0].finish_reason == "stop" and not second.choices[0].message.tool_calls
        forwarded = fake.chat_requests[-1].body["messages"]
        assert [m["role"] for m in forwarded] == ["user", "assistant", "tool"]
        assert forwarded[1]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert forwarded[2]["tool_call_id"] == tool_call.id


def test_tool_calls_streamed_in_the_openai_shape():
    with serving(weather_or_answer) as (live, _fake):
        chunks = list(live.client().chat.completions.create(model="single", messages=USER, tools=[WEATHER], stream=True))
    deltas = [tc for c in chunks for choice in c.choices for tc in (choice.delta.tool_calls or [])]
    assert [(d.index, d.function.name if d.function else None) for d in deltas] == [(0, "get_weather")]
    assert json.loads(deltas[0].function.arguments or "") == {"city": "Paris"}  # type: ignore[union-attr]
    assert [choice.finish_reason for c in chunks for choice in c.choices if choice.finish_reason] == ["tool_calls"]


def test_sampled_tool_calls_vote_by_name_and_canonical_arguments():
    spellings = [
        '{"city": "Paris", "unit": "C"}',
        '{"unit":"C","city":"Paris"}',
        '{"city": "paris"}',
        ' {"unit": "C", "city": "Paris"} ',
    ]

    def sampled(body: dict[str, Any], i: int) -> dict[str, Any]:
        return {"content": None, "tool_calls": [call("get_weather", spellings[i % 4], id=f"call_{i}")]}

    with serving(sampled) as (live, fake):
        response = live.client().chat.completions.create(model="vote-4", messages=USER, tools=[WEATHER], n=2)
    assert fake.chat_requests[0].body["n"] == 4 and fake.chat_requests[0].body["tools"] == [WEATHER]
    first, second = (json.loads((c.message.tool_calls or [])[0].function.arguments) for c in response.choices)
    assert first == {"city": "Paris", "unit": "C"}  # three of four samples, spelt three ways
    assert second == {"city": "paris"}  # a different argument value is a different call (case kept)
    assert [c.finish_reason for c in response.choices] == ["tool_calls", "tool_calls"]


def test_malformed_tool_calls_lose_to_the_other_samples():
    def mostly_broken(body: dict[str, Any], i: int) -> dict[str, Any]:
        arguments = '{"city": "Paris"}' if i == 2 else '{"city": "Par'
        return {"content": None, "tool_calls": [call("get_weather", arguments, id=f"call_{i}")]}

    with serving(mostly_broken) as (live, _fake):
        response = live.client().chat.completions.create(model="vote-4", messages=USER, tools=[WEATHER], n=4)
    assert len(response.choices) == 1  # the broken ones are not offered
    assert json.loads((response.choices[0].message.tool_calls or [])[0].function.arguments) == {"city": "Paris"}


def test_a_malformed_tool_call_with_nothing_better_is_a_502_with_the_reason():
    def broken(body: dict[str, Any], i: int) -> dict[str, Any]:
        return {"content": None, "tool_calls": [call("get_weather", '{"city": ')]}

    with serving(broken) as (live, _fake), pytest.raises(openai.APIStatusError) as caught:
        live.client().chat.completions.create(model="single", messages=USER, tools=[WEATHER])
    assert caught.value.status_code == 502
    message = caught.value.body["message"]  # type: ignore[index]
    assert "get_weather" in message and "not JSON" in message


def test_tools_on_an_architecture_that_cannot_honour_them_is_a_400_naming_it():
    with serving(weather_or_answer) as (live, fake), pytest.raises(openai.BadRequestError) as caught:
        live.client().chat.completions.create(model="moa-lite", messages=USER, tools=[WEATHER])
    body: dict[str, Any] = caught.value.body  # type: ignore[assignment]
    assert "moa-lite" in body["message"] and "generate -> fuse" in body["message"] and "tools" in body["message"]
    assert body["code"] == "unsupported_by_architecture" and body["param"] == "tools"
    assert fake.chat_requests == []  # refused before any call


def test_tool_turns_on_an_architecture_that_cannot_honour_them_is_a_400():
    turns = [*USER, {"role": "assistant", "content": None, "tool_calls": [call("get_weather", "{}")]},
             {"role": "tool", "tool_call_id": "call_1", "content": "{}"}]  # fmt: skip
    with serving(weather_or_answer) as (live, _fake), pytest.raises(openai.BadRequestError) as caught:
        live.client().chat.completions.create(model="moa-lite", messages=turns)  # type: ignore[arg-type]
    assert "tool messages" in caught.value.body["message"]  # type: ignore[index]


def test_response_format_passes_through_and_votes_on_parsed_json():
    replies = ['{"a": 1, "b": [1, 2]}', '{"b":[1,2],"a":1}', "not json at all", '{"a": 2}']
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}}
    with serving(lambda body, i: {"content": replies[i % 4]}) as (live, fake):
        response = live.client().chat.completions.create(
            model="vote-4",
            messages=USER,
            response_format=response_format,
            n=4,  # type: ignore[arg-type]
        )
    assert fake.chat_requests[0].body["response_format"] == response_format
    assert [json.loads(c.message.content or "") for c in response.choices] == [{"a": 1, "b": [1, 2]}, {"a": 2}]
    assert response.model_extra["thinktank"]["choices_available"] == 3  # type: ignore[index]


def test_reasoning_is_split_out_kept_out_of_the_vote_and_counted():
    def thinking(body: dict[str, Any], i: int) -> dict[str, Any]:
        if i % 2:
            return {"content": "answer 42", "reasoning_content": f"server-side thought {i}"}
        return {"content": f"<think>six times seven, take {i}</think>\n\nanswer 42"}

    with serving(thinking) as (live, _fake):
        client = live.client()
        response = client.chat.completions.create(model="vote-4", messages=USER, n=4)
        streamed = list(client.chat.completions.create(model="single", messages=USER, stream=True))
    assert [c.message.content for c in response.choices] == ["answer 42"]  # one group: reasoning does not vote
    assert response.choices[0].message.model_extra["reasoning_content"] == "six times seven, take 0"  # type: ignore[index]
    # every word generated, reasoning included, is a completion token (the fake counts a token per word)
    assert response.usage is not None and response.usage.completion_tokens == 2 * 7 + 2 * (2 + 3)
    text = "".join(choice.delta.content or "" for c in streamed for choice in c.choices)
    assert text == "answer 42" and "think" not in text


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("logprobs", True, "log-probabilities"),
        ("top_logprobs", 3, "log-probabilities"),
        ("presence_penalty", 0.5, "penalties"),
        ("logit_bias", {"42": 10}, "logit bias"),
        ("functions", [{"name": "f"}], "use `tools`"),
        ("frobnicate", 1, "unknown field"),
    ],
)
def test_fields_no_architecture_honours_are_a_400_naming_them(field: str, value: Any, says: str):
    with serving(weather_or_answer) as (live, fake), live.http() as http:
        body = {"model": "single", "messages": USER, field: value}
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == field and says in error["message"] and field in error["message"]
        assert fake.chat_requests == []


def test_harmless_fields_and_neutral_values_are_accepted():
    with serving(lambda body, i: {"content": "fine"}) as (live, _fake), live.http() as http:
        body = {"model": "single", "messages": USER, "user": "u1", "metadata": {"k": "v"}, "logprobs": False,
                "presence_penalty": 0, "frequency_penalty": 0.0, "response_format": {"type": "text"}}  # fmt: skip
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "fine"


def test_json_schema_format_without_a_schema_is_a_400():
    with serving(weather_or_answer) as (live, _fake), live.http() as http:
        response = http.post(
            "/v1/chat/completions", json={"model": "single", "messages": USER, "response_format": {"type": "json_schema"}}
        )
    assert response.status_code == 400 and "json_schema" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "content",
    [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
    ],
)
def test_a_tool_call_written_as_the_reply_text_is_read_as_one(content: str):
    with serving(lambda body, i: {"content": content}) as (live, _fake):
        client = live.client()
        response = client.chat.completions.create(model="single", messages=USER, tools=[WEATHER])
        plain = client.chat.completions.create(model="single", messages=USER, tools=[WEATHER], tool_choice="none")
        no_tools = client.chat.completions.create(model="single", messages=USER)
    (tool_call,) = response.choices[0].message.tool_calls or []
    assert tool_call.function.name == "get_weather" and json.loads(tool_call.function.arguments) == {"city": "Paris"}
    assert response.choices[0].finish_reason == "tool_calls" and response.choices[0].message.content is None
    assert plain.choices[0].message.content == content and not plain.choices[0].message.tool_calls
    assert no_tools.choices[0].message.content == content


def test_text_naming_an_unknown_tool_stays_text():
    content = '{"name": "launch_rockets", "arguments": {}}'
    with serving(lambda body, i: {"content": content}) as (live, _fake):
        response = live.client().chat.completions.create(model="single", messages=USER, tools=[WEATHER])
    assert response.choices[0].message.content == content and not response.choices[0].message.tool_calls
