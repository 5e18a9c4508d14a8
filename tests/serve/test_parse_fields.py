"""Reading tool calls and reasoning out of completions (plain and streamed), and what the cache keys on."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinktank.backends.openai_parse import OneChoiceStream, parse_completion, split_reasoning
from thinktank.backends.openai_payload import chat_payload
from thinktank.backends.scripted import ScriptedBackend
from thinktank.engine import Engine
from thinktank.engine.cache import ResponseCache, cache_key
from thinktank.exceptions import BackendError
from thinktank.types import Choice, GenerationRequest, ToolCall

TOOLS = ({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},)


@pytest.mark.parametrize(
    ("content", "field", "text", "reasoning"),
    [
        ("plain", None, "plain", None),
        ("<think>hm</think>\n\nyes", None, "yes", "hm"),
        ("  <think>cut by the token lim", None, "", "cut by the token lim"),
        ("yes", "from the server", "yes", "from the server"),
        ("a <think> in the middle</think> stays", None, "a <think> in the middle</think> stays", None),
    ],
)
def test_split_reasoning(content: str, field: str | None, text: str, reasoning: str | None):
    assert split_reasoning(content, field) == (text, reasoning)


def test_a_completion_with_tool_calls():
    request = GenerationRequest.from_prompt("hi", "m", tools=TOOLS)
    data = {
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
            {"id": "c2", "type": "function", "function": {"name": "f", "arguments": {"x": 2}}},  # some servers send objects
        ]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 9},
    }  # fmt: skip
    (choice,) = parse_completion(data, request, 0.1, url="u").choices
    assert choice.text == "" and choice.finish_reason == "tool_calls" and choice.completion_tokens == 9
    assert choice.tool_calls == (ToolCall("c1", "f", '{"x": 1}'), ToolCall("c2", "f", '{"x": 2}'))


def test_a_tool_call_without_a_function_name_is_a_backend_error():
    data = {"choices": [{"index": 0, "message": {"tool_calls": [{"id": "c", "function": {}}]}}]}
    with pytest.raises(BackendError, match="malformed"):
        parse_completion(data, GenerationRequest.from_prompt("hi", "m"), 0.1, url="u")


def test_a_streamed_think_block_never_reaches_the_deltas_even_split_mid_tag():
    stream = OneChoiceStream()
    pieces = ["<th", "ink>let me", " see</thi", "nk>", "\n\n", "The ", "answer", " <b>"]
    deltas = [d for p in pieces for d in stream.feed({"choices": [{"index": 0, "delta": {"content": p}}]})]
    stream.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {"completion_tokens": 8}})
    assert "".join(deltas) == "The answer <b>"
    (choice,) = stream.response("m", 0.1).choices
    assert (choice.text, choice.reasoning, choice.completion_tokens) == ("The answer <b>", "let me see", 8)


def test_a_streamed_reply_that_only_looks_like_a_think_tag_is_sent_at_the_end():
    stream = OneChoiceStream()
    assert stream.feed({"choices": [{"index": 0, "delta": {"content": "<"}}]}) == []
    assert stream.tail() == "<"
    assert stream.response("m", 0.1).choices[0].text == "<"


def test_streamed_tool_calls_are_gathered_from_their_pieces():
    stream = OneChoiceStream()
    for delta in [
        {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"x"'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
        {"reasoning_content": "thought"},
    ]:
        assert stream.feed({"choices": [{"index": 0, "delta": delta}]}) == []
    stream.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    (choice,) = stream.response("m", 0.1).choices
    assert choice.tool_calls == (ToolCall("c1", "f", '{"x": 1}'),) and choice.reasoning == "thought"
    assert choice.finish_reason == "tool_calls" and choice.completion_tokens == 4  # no usage: a token per chunk


def test_the_payload_carries_tools_and_response_format():
    fmt = {"type": "json_object"}
    payload = chat_payload(GenerationRequest.from_prompt("hi", "m", tools=TOOLS, tool_choice="required", response_format=fmt))
    assert payload["tools"] == list(TOOLS) and payload["tool_choice"] == "required" and payload["response_format"] == fmt
    assert not {"tools", "tool_choice", "response_format"} & set(chat_payload(GenerationRequest.from_prompt("hi", "m")))


def test_tools_and_response_format_are_in_the_cache_key():
    plain = GenerationRequest.from_prompt("hi", "m")
    keys = {
        cache_key(plain, 0),
        cache_key(plain.with_(tools=TOOLS), 0),
        cache_key(plain.with_(tools=TOOLS, tool_choice="required"), 0),
        cache_key(plain.with_(response_format={"type": "json_object"}), 0),
    }
    assert len(keys) == 4


async def test_a_tool_request_never_hits_a_cached_plain_answer(tmp_path: Path):
    def reply(request: GenerationRequest, i: int) -> Choice:
        if request.tools:
            return Choice("", "tool_calls", 5, tool_calls=(ToolCall("c", "f", "{}"),))
        return Choice("plain", "stop", 1)

    backend = ScriptedBackend(reply)
    engine = Engine({"m": backend}, cache=ResponseCache(tmp_path / "c.sqlite"))
    plain = GenerationRequest.from_prompt("hi", "m")
    assert [c.text for c in await engine.context().generate(plain)] == ["plain"]
    (tooled,) = await engine.context().generate(plain.with_(tools=TOOLS))
    assert tooled.tool_calls == (ToolCall("c", "f", "{}"),) and not tooled.cached
    (again,) = await engine.context().generate(plain.with_(tools=TOOLS))
    assert again.tool_calls and not again.cached  # not stored: a hit would lose its tool calls
    assert len(backend.requests) == 3
    (hit,) = await engine.context().generate(plain)
    assert hit.cached and hit.text == "plain"  # the plain answer is still served from the cache
