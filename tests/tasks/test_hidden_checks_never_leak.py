"""Guard: nothing a grader holds back may reach a technique through `TaskInput`.

Substring checks alone are trivially true for short answers ("12" is in many prompts) and trivially
false for long hidden code, so each detector below checks provenance instead: what a technique sees
must come from the public source (the docstring, the question), never from the hidden material.
Every detector is also run on a deliberately leaky problem, to prove it can fail.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from thinktank.tasks.base import HiddenChecks, Problem, TaskInput
from thinktank.tasks.gsm_symbolic import TEMPLATES, GsmSymbolicTask, generate_example
from thinktank.tasks.humaneval import HumanEvalTask, docstring_tests, load_rows
from thinktank.tasks.jsonl import JsonlTask
from thinktank.tasks.rag_synth import RagSynthPositionedTask, RagSynthTask
from thinktank.verifiers.qa import normalize_answer

_HIDDEN_WORDS = {
    "test",
    "test_code",
    "gold_sql",
    "gold",
    "answer",
    "answer_value",
    "answer_cot",
    "solution",
    "canonical_solution",
}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *_strings(v)]]
    if isinstance(value, (list, tuple, set)):
        return [s for v in value for s in _strings(v)]
    return [] if value is None else [str(value)]


def _visible(task_input: TaskInput) -> str:
    """Everything a technique receives, as one text."""
    return "\n".join(_strings([getattr(task_input, f.name) for f in dataclasses.fields(TaskInput)]))


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text).replace('"', "'")


def _generic_leaks(problem: Problem) -> list[str]:
    """Any hidden value long enough to be unmistakable (>= 8 chars, normalised) found verbatim; meta keys that name hidden things."""
    visible = _norm(_visible(problem.input)).lower()  # SQL and prose are case-insensitive
    hidden = [
        (name, _norm(text).lower()) for name, value in dataclasses.asdict(problem.hidden).items() for text in _strings(value)
    ]
    leaks = [name for name, value in hidden if len(value) >= 8 and value in visible]
    return leaks + [f"meta[{k!r}]" for k in problem.input.meta if k in _HIDDEN_WORDS]


def _canonical_statement(code: str) -> str:
    try:
        return ast.unparse(ast.parse(code))
    except SyntaxError:
        return _norm(code)


def _code_leaks(problem: Problem, row: dict[str, Any]) -> list[str]:
    """Public tests must be derivable from the docstring alone; no hidden assert or reference line may show up."""
    source, visible = _norm(row["prompt"]), _norm(_visible(problem.input))
    from_docstring = set(docstring_tests(row["prompt"], row["entry_point"]))  # a function of the public prompt only
    leaks = [f"public test {t!r} is not a docstring example" for t in problem.input.public_tests if t not in from_docstring]
    examples = {_canonical_statement(t) for t in from_docstring}
    for line in row["test"].splitlines():
        own_name = line.replace("candidate", row["entry_point"]).strip()
        stated = _norm(own_name.removeprefix("assert"))
        if len(stated) >= 8 and stated not in source and _canonical_statement(own_name) not in examples and stated in visible:
            leaks.append(f"hidden check line {line.strip()!r}")
    for line in row["canonical_solution"].splitlines():
        if len(line.strip()) >= 15 and _norm(line) not in source and _norm(line) in visible:
            leaks.append(f"reference solution line {line.strip()!r}")
    if "defcheck(candidate)" in visible:
        leaks.append("hidden check function")
    return leaks


def _number_count(text: str, number: str) -> int:
    return len(re.findall(rf"(?<![\d.]){re.escape(number)}(?!\.?\d)", text))


def _math_leaks(problem: Problem, question: str, worked: str) -> list[str]:
    """The answer may appear only as often as the question mentions it; no worked step beyond the question; no meta copy."""
    answer, task_input, leaks = problem.hidden.answer, problem.input, []
    shown = "\n".join(_strings([task_input.prompt, task_input.public_tests, task_input.schema, task_input.entry_point]))
    if _number_count(shown, answer) > _number_count(question, answer):
        leaks.append(f"answer {answer} appears more often than in the question")
    id_parts = problem.id.split("/")[1:]  # meta may repeat the id's template and seed, whatever their value
    leaks += [f"meta[{k!r}]" for k, v in task_input.meta.items() if str(v) == answer and str(v) not in id_parts]
    visible, source = _norm(_visible(task_input)), _norm(question)
    steps = [s.strip() for s in worked.splitlines() if len(s.strip()) >= 15 and _norm(s) not in source]
    return leaks + [f"worked step {s!r}" for s in steps if _norm(s) in visible]


def test_task_input_has_no_hidden_fields() -> None:
    visible = {f.name for f in dataclasses.fields(TaskInput)}
    hidden = {f.name for f in dataclasses.fields(HiddenChecks)}
    assert not visible & hidden and not visible & _HIDDEN_WORDS
    assert not any(isinstance(f.type, type) and issubclass(f.type, HiddenChecks) for f in dataclasses.fields(TaskInput))


@pytest.fixture(scope="module")
def humaneval() -> list[tuple[Problem, dict[str, Any]]]:
    rows = {row["task_id"]: row for row in load_rows()}
    return [(p, rows[p.id]) for p in HumanEvalTask().problems()]


def test_humaneval_never_leaks(humaneval: list) -> None:
    leaks = {p.id: _generic_leaks(p) + _code_leaks(p, row) for p, row in humaneval}
    assert {k: v for k, v in leaks.items() if v} == {}
    assert sum(len(p.input.public_tests) for p, _ in humaneval) > 400  # the provenance check had real tests to inspect


def test_humaneval_detectors_catch_a_leak(humaneval: list) -> None:
    problem, row = next((p, r) for p, r in humaneval if p.id == "HumanEval/53")
    hidden_only = "assert add(7, 5) == 12"  # in check(), not in the docstring
    leaky = dataclasses.replace(problem.input, public_tests=(*problem.input.public_tests, hidden_only))
    assert len(_code_leaks(Problem(leaky, problem.hidden), row)) == 2  # not a docstring example, and a hidden line
    hinted = dataclasses.replace(problem.input, prompt=problem.input.prompt + "Note: add(0, 1) == 1")
    assert _code_leaks(Problem(hinted, problem.hidden), row) == ["hidden check line 'assert candidate(0, 1) == 1'"]
    body_row = next(r for p, r in humaneval if p.id == "HumanEval/0")
    problem0 = next(p for p, _ in humaneval if p.id == "HumanEval/0")
    with_solution = dataclasses.replace(problem0.input, prompt=problem0.input.prompt + body_row["canonical_solution"])
    assert _code_leaks(Problem(with_solution, problem0.hidden), body_row)
    with_tests = dataclasses.replace(problem0.input, meta={**problem0.input.meta, "extra": problem0.hidden.test_code})
    assert _generic_leaks(Problem(with_tests, problem0.hidden)) == ["test_code"]


@pytest.fixture(scope="module")
def gsm() -> list[tuple[Problem, dict[str, Any]]]:
    problems = GsmSymbolicTask(n=2 * len(TEMPLATES), seed=13).load()
    return [(p, generate_example(p.input.meta["template"], p.input.meta["seed"])) for p in problems]


def test_gsm_symbolic_never_leaks(gsm: list) -> None:
    leaks = {p.id: _generic_leaks(p) + _math_leaks(p, ex["question"], ex["metadata"]["answer_cot"]) for p, ex in gsm}
    assert {k: v for k, v in leaks.items() if v} == {}
    assert all(set(p.input.meta) == {"template", "seed", "source"} for p, _ in gsm)


def test_gsm_symbolic_detectors_catch_a_leak(gsm: list) -> None:
    problem, example = gsm[0]
    question, worked = example["question"], example["metadata"]["answer_cot"]
    hint = dataclasses.replace(problem.input, prompt=f"{problem.input.prompt} (It should come out as {problem.hidden.answer}.)")
    assert _math_leaks(Problem(hint, problem.hidden), question, worked)
    in_meta = dataclasses.replace(problem.input, meta={**problem.input.meta, "check": problem.hidden.answer})
    assert _math_leaks(Problem(in_meta, problem.hidden), question, worked)
    steps = dataclasses.replace(problem.input, prompt=f"{problem.input.prompt}\n{worked}")
    assert _math_leaks(Problem(steps, problem.hidden), question, worked)


def test_jsonl_never_leaks_any_kind(tmp_path: Path) -> None:
    rows = [
        {"id": "c", "kind": "code", "prompt": "Write inc(x).", "entry_point": "inc", "hidden": {"test_code": "def check(candidate):\n    assert candidate(41) == 42\n"}},
        {"id": "s", "kind": "sql", "prompt": "Oldest singer?", "schema": "Table: singer. Columns: name, age", "hidden": {"gold_sql": "SELECT name FROM singer ORDER BY age DESC LIMIT 1"}},
        {"id": "m", "kind": "math", "prompt": "What is 6 * 7?", "hidden": {"answer": "42"}},
        {"id": "t", "kind": "text", "prompt": "Name a colour of the sky.", "hidden": {"answer": "blue, on clear days"}},
    ]  # fmt: skip
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    problems = JsonlTask(path).load()
    assert {p.kind for p in problems} == {"code", "sql", "math", "text"}
    assert [_generic_leaks(p) for p in problems] == [[]] * 4
    assert all(_number_count(_visible(p.input), p.hidden.answer) == 0 for p in problems if p.kind == "math")
    sql = problems[1]
    leaky = dataclasses.replace(sql.input, schema=f"{sql.input.schema}\n-- e.g. {sql.hidden.gold_sql.lower()}")
    assert _generic_leaks(Problem(leaky, sql.hidden)) == ["gold_sql"]


def test_spider_never_leaks() -> None:
    pytest.importorskip("thinktank.tasks.spider")
    from thinktank.tasks.registry import get_task

    problems = get_task("spider").load()
    assert problems and all(
        p.kind == "sql" and len(_norm(p.hidden.gold_sql)) >= 8 for p in problems
    )  # every gold query is checked
    assert {p.id: _generic_leaks(p) for p in problems if _generic_leaks(p)} == {}


def _qa_leaks(problem: Problem) -> list[str]:
    """No answer or alias as whole words anywhere a technique looks, no gold passage id, and meta holds only the hop count."""
    visible = f" {normalize_answer(_visible(problem.input))} "
    hidden = problem.hidden
    leaks = [f"answer {a!r}" for a in (hidden.answer, *hidden.aliases) if f" {normalize_answer(a)} " in visible]
    leaks += [f"gold passage {i!r}" for i in hidden.gold_passages if re.search(rf"\b{re.escape(i)}\b", _visible(problem.input))]
    return leaks + [f"meta[{k!r}]" for k in problem.input.meta if k != "hops"]


@pytest.fixture(scope="module")
def rag_synth(tmp_path_factory: pytest.TempPathFactory) -> list[Problem]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("THINKTANK_CACHE", str(tmp_path_factory.mktemp("cache")))
        return RagSynthTask(seed=11).load() + RagSynthPositionedTask(seed=11).load()


def test_rag_synth_never_leaks(rag_synth: list[Problem]) -> None:
    assert len(rag_synth) >= 200 and all(p.kind == "qa" and p.hidden.gold_passages for p in rag_synth)
    assert {p.id: _generic_leaks(p) + _qa_leaks(p) for p in rag_synth if _generic_leaks(p) + _qa_leaks(p)} == {}


def test_rag_synth_detectors_catch_a_leak(rag_synth: list[Problem]) -> None:
    problem = next(p for p in rag_synth if p.input.meta["hops"] == 2)
    hinted = dataclasses.replace(problem.input, prompt=f"{problem.input.prompt} (It is {problem.hidden.answer}.)")
    assert _qa_leaks(Problem(hinted, problem.hidden)) == [f"answer {problem.hidden.answer!r}"]
    pointed = dataclasses.replace(problem.input, meta={"hops": 2, "start": problem.hidden.gold_passages[0]})
    assert _qa_leaks(Problem(pointed, problem.hidden)) == [f"gold passage {problem.hidden.gold_passages[0]!r}", "meta['start']"]
    placed = dataclasses.replace(problem.input, meta={"hops": 2, "gold_position": 3})
    assert _qa_leaks(Problem(placed, problem.hidden)) == ["meta['gold_position']"]
