import json
from pathlib import Path

import pytest

import thinktank.tasks.spider as spider_module
from thinktank._packages import PackageFetchError
from thinktank.exceptions import TaskDataError
from thinktank.tasks.spider import SpiderTask
from thinktank.verifiers.sql import SqlVerifier, extract_sql, run_query

GOOD = {
    "ideal": "SELECT count(*) FROM singer",
    "input": [
        {
            "role": "system",
            "content": "Answer with SQLite.\nUse only the following tables and columns:\n"
            "Table: singer. Columns: Singer_ID (number), Name (text)\n\nQuestion: How many singers?\n",
        }
    ],
}


@pytest.fixture(scope="module")
def problems():
    return SpiderTask().load()


def test_real_data_loads_with_stable_ids_and_separated_answers(problems) -> None:
    assert len(problems) == 194
    assert [p.id for p in problems] == [f"spider/{i}" for i in range(194)]
    assert {p.kind for p in problems} == {"sql"}
    assert len({p.input.meta["schema_index"] for p in problems}) == 20
    first = problems[0]
    assert first.input.schema is not None and first.input.schema.startswith("Table: stadium. Columns: Stadium_ID (number)")
    assert first.input.meta["question"] == "How many singers do we have?"
    assert "How many singers do we have?" in first.input.prompt
    assert first.input.schema in first.input.prompt
    assert "```sql" in first.input.prompt
    assert first.hidden.gold_sql == "SELECT count(*) FROM singer"
    assert all(p.hidden.gold_sql not in p.input.prompt for p in problems)
    assert SpiderTask().load(limit=2, offset=5)[0].id == "spider/5"


def test_a_malformed_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "spider.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + '{"ideal": "SELECT 1", "input": [' + "\n")
    task = SpiderTask(path)
    with pytest.raises(TaskDataError, match=r"spider\.jsonl:3: malformed"):
        task.load()
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps({"input": GOOD["input"]}) + "\n")
    with pytest.raises(TaskDataError, match=r":2: .*'ideal'"):
        task.load()
    no_schema = {"ideal": "SELECT 1", "input": [{"role": "user", "content": "Question: why?"}]}
    path.write_text(json.dumps(no_schema) + "\n")
    with pytest.raises(TaskDataError, match=r":1: .*tables and columns"):
        task.load()


def test_a_local_file_in_the_same_format_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "spider.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD))  # no trailing newline
    loaded = SpiderTask(path).load()
    assert [p.id for p in loaded] == ["spider/0", "spider/1"]
    assert loaded[0].input.schema == "Table: singer. Columns: Singer_ID (number), Name (text)"


def test_missing_data_is_a_task_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TaskDataError, match="not found"):
        SpiderTask(tmp_path / "absent.jsonl").load()

    def offline(*_args, **_kwargs):
        raise PackageFetchError("could not download evals==3.0.1.post1 from PyPI")

    monkeypatch.setattr(spider_module, "extract_member", offline)
    with pytest.raises(TaskDataError, match=r"evals==3\.0\.1\.post1"):
        SpiderTask().load()


def test_gold_queries_run_on_synthesised_databases(problems, tmp_path: Path) -> None:
    """Measures what test-suite grading rests on: every gold query runs, and most return rows."""
    verifier = SqlVerifier(k=5, db_dir=tmp_path)
    failures, non_empty, varied = [], 0, 0
    for p in problems:
        assert p.input.schema is not None
        results = [run_query(path, p.hidden.gold_sql) for path in verifier.databases(p.input.schema, [p.hidden.gold_sql])]
        errors = [r.error for r in results if not r.ok]
        if errors:
            failures.append((p.id, errors[0]))
            continue
        non_empty += any(r.rows for r in results)
        varied += len({r.rows for r in results}) > 1
    n = len(problems)
    summary = f"gold executes: {n - len(failures)}/{n}, non-empty on some db: {non_empty}/{n}, varies across dbs: {varied}/{n}"
    print(summary)
    assert (n - len(failures)) / n >= 0.95, (summary, failures[:5])
    assert non_empty / n >= 0.9, summary
    assert varied / n >= 0.8, summary  # the databases differ in ways the gold queries can see


async def test_gold_grades_as_correct_against_itself(problems, tmp_path: Path) -> None:
    verifier = SqlVerifier(k=5, db_dir=tmp_path)
    for p in problems[::25]:
        reply = f"Here you go:\n```sql\n{p.hidden.gold_sql}\n```"
        verdict = await verifier.grade(extract_sql(reply) or "", p.hidden.gold_sql, p.input.schema or "")
        assert verdict.passed, (p.id, verdict.reason)
