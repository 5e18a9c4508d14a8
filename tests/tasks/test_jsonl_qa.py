"""User QA tasks in JSONL: the short line form, corpus paths relative to the file, and clear errors for bad lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from thinktank.eval.grading import Grader
from thinktank.exceptions import TaskDataError
from thinktank.tasks.jsonl import load_jsonl_problems
from thinktank.tasks.registry import get_task


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "corpus.jsonl"
    path.parent.mkdir()
    rows = [{"id": "p1", "text": "Velmora Works was founded in 1887.", "title": "Velmora Works"}, {"id": "p2", "text": "Other."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _write(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


async def test_qa_lines_load_with_answers_aliases_and_a_corpus_relative_to_the_file(tmp_path: Path, corpus: Path) -> None:
    docs = tmp_path / "data" / "docs"
    docs.mkdir()
    rows = [
        {"corpus": "data/corpus.jsonl", "question": "When was Velmora Works founded?", "answers": [1887, "eighteen eighty-seven"], "gold_passages": ["p1"]},
        "",
        {"id": "own", "corpus": str(docs), "question": "Who?", "answers": ["Ilsa Dravik"], "cite": True, "meta": {"topic": "x"}},
    ]  # fmt: skip
    problems = get_task(str(_write(tmp_path / "qa.jsonl", rows))).load()
    first, second = problems
    assert first.id == "qa/1" and first.kind == "qa" and first.input.prompt == "When was Velmora Works founded?"
    assert first.input.corpus == str(corpus.resolve()) and first.input.meta == {}
    assert first.hidden.answer == "1887" and first.hidden.aliases == ("eighteen eighty-seven",)
    assert first.hidden.gold_passages == ("p1",)
    assert second.id == "own" and second.input.corpus == str(docs.resolve())
    assert second.input.meta == {"topic": "x", "cite": True} and second.hidden.aliases == ()
    assert (await Grader().grade(first, "1887 [p1]")).passed


def test_the_general_form_carries_a_corpus_aliases_and_gold_passages(tmp_path: Path, corpus: Path) -> None:
    row = {
        "id": "g",
        "kind": "qa",
        "prompt": "When?",
        "corpus": "data/corpus.jsonl",
        "hidden": {"answer": "1887", "aliases": [1887.0], "gold_passages": ["p1"]},
    }
    (problem,) = load_jsonl_problems(_write(tmp_path / "g.jsonl", [row]))
    assert problem.input.corpus == str(corpus.resolve())
    assert problem.hidden.aliases == ("1887.0",) and problem.hidden.gold_passages == ("p1",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"corpus": "data/corpus.jsonl", "question": "When?"}, "a QA line needs 'answers': a non-empty list"),
        ({"corpus": "data/corpus.jsonl", "question": "When?", "answers": []}, "a QA line needs 'answers'"),
        ({"corpus": "data/corpus.jsonl", "question": "When?", "answers": "1887"}, "a QA line needs 'answers'"),
        ({"corpus": "data/corpus.jsonl", "question": "When?", "answers": [" "]}, "field 'answers': the first answer is blank"),
        (
            {"corpus": "nowhere.jsonl", "question": "When?", "answers": ["1887"]},
            r"field 'corpus': corpus '.*nowhere\.jsonl' does not exist",
        ),
        ({"question": "When?", "answers": ["1887"]}, "field 'corpus': Field required"),
        ({"corpus": "data/corpus.jsonl", "question": "", "answers": ["1887"]}, "field 'question'"),
        ({"corpus": "data/corpus.jsonl", "question": "When?", "answers": ["1887"], "hint": "x"}, "field 'hint': Extra inputs"),
        ({"id": "g", "kind": "qa", "prompt": "When?", "corpus": "nope/", "hidden": {"answer": "1"}}, "field 'corpus': corpus"),
        ({"id": "g", "kind": "qa", "prompt": "When?", "hidden": {}}, "kind 'qa' needs 'hidden.answer'"),
    ],
)
def test_a_bad_qa_line_is_an_error_naming_its_line(tmp_path: Path, corpus: Path, line: dict, message: str) -> None:
    good = {"corpus": "data/corpus.jsonl", "question": "Fine?", "answers": ["yes"]}
    path = _write(tmp_path / "bad.jsonl", [good, "", line])
    with pytest.raises(TaskDataError, match=rf"^{re.escape(str(path))}:3: .*{message}"):
        load_jsonl_problems(path)


def test_a_repeated_default_id_cannot_happen_but_a_repeated_own_id_is_reported(tmp_path: Path, corpus: Path) -> None:
    line = {"id": "same", "corpus": "data/corpus.jsonl", "question": "Q?", "answers": ["a"]}
    path = _write(tmp_path / "dup.jsonl", [line, line])
    with pytest.raises(TaskDataError, match=r"dup\.jsonl:2: field 'id': 'same' already used on line 1"):
        load_jsonl_problems(path)
