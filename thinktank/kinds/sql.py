"""SQL over a schema: one SQLite query, equal when its result is.

Keys: each distinct query runs once, all concurrently, on the task's first synthesised database (shaped by the
literals of *all* the queries, so every query sees the same rows); the key is the column count and the multiset of
normalised rows (row order and column names ignored). A query that fails casts no vote. The public check: the query
must run and return rows. Hidden grading: test-suite accuracy against the gold query (`SqlVerifier`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from thinktank._aio import gather_all
from thinktank.kinds.base import Key, Reply, TaskKind
from thinktank.problems import Problem, TaskInput
from thinktank.verifiers.base import Verdict
from thinktank.verifiers.sql import GoldQuery, SqlVerifier, extract_sql, normalize

if TYPE_CHECKING:
    from thinktank.engine.resources import Resources

__all__ = ["SqlKind"]


class SqlKind(TaskKind):
    name = "sql"
    answer_format = "Write exactly one SQLite query in a ```sql block."
    fence = "sql"
    needs = (("schema", ""), ("hidden.gold_sql", ""))
    artefact = "query"
    repair_terms = ("sql", "query")
    replay_obstacle = (
        "search replays code, math and text tasks only: a SQL answer's vote key depends on the whole candidate set"
        " (the synthesised database is shaped by every query), so samples cannot be replayed one by one"
    )

    def extract(self, task: TaskInput, text: str) -> str | None:
        return extract_sql(text)

    async def answer_keys(
        self, resources: Resources, task: TaskInput, candidates: Sequence[Reply], memo: dict[str, Key]
    ) -> list[Key]:
        queries = list(dict.fromkeys(c.answer for c in candidates if c.answer and c.answer.strip()))
        if not queries or not task.schema:
            return [None] * len(candidates)
        sql = resources.get(SqlVerifier)
        results = await gather_all(sql.execute(q, task.schema, hint_sqls=queries) for q in queries)
        keys: dict[str, Key] = {}
        for query, result in zip(queries, results, strict=True):
            rows = Counter(tuple(normalize(v) for v in row) for row in result.rows)
            keys[query] = ("rows", len(result.columns), frozenset(rows.items())) if result.ok else None
        return [keys.get(c.answer) if c.answer else None for c in candidates]

    def has_public_checks(self, task: TaskInput) -> bool:
        return bool(task.schema)

    async def run_public_checks(self, resources: Resources, task: TaskInput, answer: str) -> Verdict:
        result = await resources.get(SqlVerifier).execute(answer, task.schema or "")
        details = {
            "rows": len(result.rows),
            "columns": list(result.columns),
            "error": result.error,
            "error_kind": result.error_kind,
        }
        if not result.ok:
            return Verdict(False, f"{result.error_kind}: {result.error}", 0.0, details, result.duration_s)
        if not result.rows:
            # it runs, which beats an error, but an empty result is rarely what a question asks for
            return Verdict(False, "the query runs but returns no rows", 0.5, details, result.duration_s)
        return Verdict(True, f"the query runs and returns {len(result.rows)} rows", 1.0, details, result.duration_s)

    async def grade(self, resources: Resources, problem: Problem, answer: str) -> Verdict:
        gold = GoldQuery(problem.hidden.gold_sql, problem.input.schema or "")
        return await resources.get(SqlVerifier).check(answer, gold)
