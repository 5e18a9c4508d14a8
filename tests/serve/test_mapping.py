"""The request -> run mapping (task input, overrides, budget) and the wire's value ranges, without HTTP."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from thinktank.serve.errors import ServeError
from thinktank.serve.mapping import budget, overrides, task_input
from thinktank.serve.wire import ChatCompletionRequest


def body(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "a", "messages": [{"role": "user", "content": "q"}]} | fields)


def test_single_user_message_is_the_prompt():
    assert task_input(body(), "id").prompt == "q"
    assert task_input(body(), "id").kind == "text"


def test_system_and_history_fold_into_the_prompt():
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": [{"type": "text", "text": "and 3+3?"}]},
    ]
    prompt = task_input(body(messages=messages), "id").prompt
    assert prompt == "Be terse.\n\nConversation so far:\nUser: 2+2?\nAssistant: 4\n\nand 3+3?"


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "only a system message"}],
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
    ],
)
def test_unservable_conversations_are_422(messages):
    with pytest.raises(ServeError) as info:
        task_input(body(messages=messages), "id")
    assert info.value.status_code == 422 and info.value.param == "messages"


def test_task_options_reach_the_task_input():
    options = {"kind": "code", "entry_point": "f", "public_tests": ["assert f() == 1"]}
    task = task_input(body(thinktank=options), "id")
    assert (task.kind, task.entry_point, task.public_tests) == ("code", "f", ("assert f() == 1",))


def test_overrides_from_options():
    o = overrides(body(max_tokens=50, max_completion_tokens=20, temperature=0.3, seed=9, stop="###"))
    assert (o.max_tokens, o.temperature, o.seed, o.stop) == (20, 0.3, 9, ("###",))
    plain = overrides(body())
    assert (plain.max_tokens, plain.temperature, plain.seed, plain.stop) == (None, None, None, ())


@pytest.mark.parametrize(
    "fields",
    [
        {"n": 0},
        {"n": 17},
        {"max_tokens": 0},
        {"max_tokens": 10**9},
        {"temperature": 3},
        {"stop": ["a", "b", "c", "d", "e"]},
        {"stop": [""]},
        {"messages": []},
        {"model": ""},
        {"thinktank": {"budget": {"max_tokens": 0}}},
        {"thinktank": {"unknown": 1}},
    ],
)
def test_out_of_range_values_are_rejected(fields):
    with pytest.raises(ValidationError):
        body(**fields)


def test_budget_from_body_and_headers_takes_the_stricter():
    b = body(thinktank={"budget": {"max_tokens": 500, "max_calls": 3}})
    limits = budget(b, {"x-thinktank-budget-tokens": "200", "x-thinktank-budget-usd": "0.5"})
    assert (limits.max_tokens, limits.max_calls, limits.max_usd) == (200, 3, 0.5)
    assert budget(b, {"x-thinktank-budget-tokens": "9000"}).max_tokens == 500
    assert budget(body(), {}) is None


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5", "nan"])
def test_bad_budget_header_is_400(value):
    with pytest.raises(ServeError) as info:
        budget(body(), {"x-thinktank-budget-tokens": value})
    assert info.value.status_code == 400 and info.value.param == "x-thinktank-budget-tokens"
