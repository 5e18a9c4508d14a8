"""The request -> run mapping and the result -> response shaping, without HTTP."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from thinktank.arch import ArchResult
from thinktank.engine.trace import CallRecord, TraceNode
from thinktank.exceptions import BackendTimeout, BackendUnreachable, ContextLengthExceeded, ServeError, UnknownModelError
from thinktank.serve.protocol import ChatCompletionRequest, as_serve_error, completion, finish_reason, top_choices
from thinktank.techniques.base import Candidate
from thinktank.usage import Usage


def body(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "a", "messages": [{"role": "user", "content": "q"}]} | fields)


def test_single_user_message_is_the_prompt():
    assert body().task_input("id").prompt == "q"
    assert body().task_input("id").kind == "text"


def test_system_and_history_fold_into_the_prompt():
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": [{"type": "text", "text": "and 3+3?"}]},
    ]
    prompt = body(messages=messages).task_input("id").prompt
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
        body(messages=messages).task_input("id")
    assert info.value.status_code == 422 and info.value.param == "messages"


def test_task_options_reach_the_task_input():
    options = {"kind": "code", "entry_point": "f", "public_tests": ["assert f() == 1"]}
    task = body(thinktank=options).task_input("id")
    assert (task.kind, task.entry_point, task.public_tests) == ("code", "f", ("assert f() == 1",))


def test_overrides_from_options():
    o = body(max_tokens=50, max_completion_tokens=20, temperature=0.3, seed=9, stop="###").overrides()
    assert (o.max_tokens, o.temperature, o.seed, o.stop) == (20, 0.3, 9, ("###",))
    plain = body().overrides()
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
    budget = b.budget({"x-thinktank-budget-tokens": "200", "x-thinktank-budget-usd": "0.5"})
    assert (budget.max_tokens, budget.max_calls, budget.max_usd) == (200, 3, 0.5)
    assert b.budget({"x-thinktank-budget-tokens": "9000"}).max_tokens == 500
    assert body().budget({}) is None


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5", "nan"])
def test_bad_budget_header_is_400(value):
    with pytest.raises(ServeError) as info:
        body().budget({"x-thinktank-budget-tokens": value})
    assert info.value.status_code == 400 and info.value.param == "x-thinktank-budget-tokens"


def result_with(texts_answers: list[tuple[str, str | None]], *, reasons=("stop",), budget_cut=False) -> ArchResult:
    root = TraceNode("q")
    gen = root.child("gen")
    gen.calls.append(CallRecord("m", "b", [0], Usage(prompt_tokens=3, completion_tokens=4, calls=1), "ok", 0, 0, list(reasons)))
    candidates = [Candidate(t, a, "m", "gen") for t, a in texts_answers]
    return ArchResult(candidates[0] if candidates else None, candidates, root, budget_cut=budget_cut)


def test_top_choices_are_distinct_by_answer_best_first():
    result = result_with([("x = 1", "1"), ("so 1", "1"), ("2", "2"), ("no answer text", None)])
    assert [c.text for c in top_choices(result, 16)] == ["x = 1", "2", "no answer text"]
    assert [c.text for c in top_choices(result, 2)] == ["x = 1", "2"]


def test_finish_reason_comes_from_the_nodes_calls_or_the_budget():
    assert finish_reason(result_with([("t", "t")], reasons=("length",)), result_with([("t", "t")]).answer) == "length"
    result = result_with([("t", "t")])
    assert finish_reason(result, result.answer) == "stop"
    cut = result_with([("t", "t")], budget_cut=True)
    assert finish_reason(cut, cut.answer) == "length"


def test_completion_usage_is_the_whole_trace_and_nodes_break_it_down():
    result = result_with([("a", "a"), ("b", "b")])
    result.trace.child("judge").calls.append(
        CallRecord("m", "b", [0], Usage(prompt_tokens=10, completion_tokens=1, calls=1, cost_usd=0.5), "ok", 0, 0, ["stop"])
    )
    out = completion("id", 0, "arch", result, n=4, latency_s=1.23456)
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (13, 5, 18)
    assert [c.message.content for c in out.choices] == ["a", "b"]
    ext = out.thinktank
    assert (ext.calls, ext.cost_usd, ext.choices_available, ext.latency_s) == (2, 0.5, 2, 1.2346)
    assert [(n.name, n.calls, n.prompt_tokens) for n in ext.nodes] == [("gen", 1, 3), ("judge", 1, 10)]


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (BackendUnreachable("down"), 503, "backend_unavailable"),
        (BackendTimeout("slow"), 503, "backend_unavailable"),
        (ContextLengthExceeded("too long", 400), 400, "context_length_exceeded"),
        (TimeoutError(), 504, "timeout"),
        (UnknownModelError("x", ["y"]), 500, "internal_error"),
        (RuntimeError("secret detail"), 500, "internal_error"),
    ],
)
def test_errors_map_to_statuses(exc, status, code):
    error = as_serve_error(exc)
    assert (error.status_code, error.code) == (status, code)
    assert "secret detail" not in str(error)  # unexpected errors do not leak their text
