"""User JSONL tasks: every kind loads, and every kind of bad line is reported with file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thinktank.exceptions import TaskDataError
from thinktank.tasks.jsonl import JsonlTask, load_jsonl_problems

GOOD = [
    {
        "id": "add",
        "kind": "code",
        "prompt": "Write add(a, b).",
        "entry_point": "add",
        "public_tests": ["assert add(1, 2) == 3"],
        "hidden": {"test_code": "def check(candidate):\n    assert candidate(2, 2) == 4\n"},
    },
    {
        "id": "singers",
        "kind": "sql",
        "prompt": "How many singers are there?",
        "schema": "Table: singer. Columns: singer_id, name",
        "hidden": {"gold_sql": "SELECT count(*) FROM singer"},
    },
    {"id": "eggs", "kind": "math", "prompt": "3 * 4 eggs?", "hidden": {"answer": 12}, "meta": {"source": "mine"}},
    {"id": "capital", "kind": "text", "prompt": "Capital of France?", "hidden": {"answer": "Paris"}},
]


def _write(tmp_path: Path, rows: list, name: str = "tasks.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_every_kind_loads(tmp_path: Path) -> None:
    task = JsonlTask(_write(tmp_path, [GOOD[0], "", GOOD[1], "   ", *GOOD[2:]]))
    problems = task.load()
    assert task.name == "tasks" and task.kind == "code"
    assert [p.id for p in problems] == ["add", "singers", "eggs", "capital"]
    assert [p.kind for p in problems] == ["code", "sql", "math", "text"]
    add, singers, eggs, capital = problems
    assert add.input.entry_point == "add" and add.input.public_tests == ("assert add(1, 2) == 3",)
    assert add.hidden.test_code.startswith("def check")
    assert singers.input.schema == "Table: singer. Columns: singer_id, name" and singers.hidden.gold_sql.startswith("SELECT")
    assert eggs.hidden.answer == "12" and eggs.input.meta == {"source": "mine"}
    assert capital.hidden.answer == "Paris" and capital.input.prompt == "Capital of France?"


def test_limit_and_offset(tmp_path: Path) -> None:
    task = JsonlTask(_write(tmp_path, GOOD), name="mine")
    assert task.name == "mine"
    assert [p.id for p in task.load(limit=2, offset=1)] == ["singers", "eggs"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match=r"task file not found: .*nope\.jsonl"):
        JsonlTask(tmp_path / "nope.jsonl")


def _error_for(tmp_path: Path, bad: object) -> str:
    path = _write(tmp_path, [GOOD[0], "", bad])
    with pytest.raises(TaskDataError) as info:
        load_jsonl_problems(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: "), message
    return message


def test_malformed_json(tmp_path: Path) -> None:
    assert "malformed JSON" in _error_for(tmp_path, '{"id": "x", "kind": ')


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "poetry"}, "'kind'"),
        ({"prompt": ""}, "'prompt'"),
        ({"id": 5}, "'id'"),
        ({"public_tests": "assert True"}, "'public_tests'"),
        ({"hidden": {"answer": "3", "solution": "x"}}, "'hidden.solution'"),
        ({"extra_field": 1}, "'extra_field'"),
        ({"entry_point": None}, "'entry_point'"),
        ({"hidden": {}}, "'hidden.test_code'"),
    ],
)
def test_schema_violations_name_the_field(tmp_path: Path, change: dict, field: str) -> None:
    assert field in _error_for(tmp_path, {**GOOD[0], **change})


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({k: v for k, v in GOOD[1].items() if k != "schema"}, "'schema'"),
        ({**GOOD[1], "hidden": {"answer": "3"}}, "'hidden.gold_sql'"),
        ({**GOOD[2], "hidden": {"answer": "  "}}, "'hidden.answer'"),
        ({k: v for k, v in GOOD[3].items() if k != "hidden"}, "'hidden'"),
    ],
)
def test_kind_specific_requirements(tmp_path: Path, row: dict, field: str) -> None:
    assert field in _error_for(tmp_path, row)


def test_not_an_object(tmp_path: Path) -> None:
    assert "dictionary" in _error_for(tmp_path, "[1, 2]")


def test_duplicate_ids(tmp_path: Path) -> None:
    assert "already used on line 1" in _error_for(tmp_path, GOOD[0])


def test_the_documented_example_loads(tmp_path: Path) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "tasks.md").read_text(encoding="utf-8")
    example = docs.split("```json\n", 1)[1].split("```", 1)[0]
    problems = load_jsonl_problems(_write(tmp_path, example.strip().splitlines()))
    assert [(p.id, p.kind) for p in problems] == [("inc", "code"), ("oldest", "sql"), ("eggs", "math")]
