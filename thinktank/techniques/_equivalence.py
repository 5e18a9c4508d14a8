"""When two candidates give *the same answer*, by task kind: the key that `vote`, `adaptive` and `cascade` group by.

    keys = await answer_keys(ctx, task, candidates)   # one hashable key per candidate, None = casts no vote

Equal keys mean equivalent answers; texts may differ freely:

* math — the value of the final answer (`canonical_answer`): "#### 42", "The answer is 42.0" and "\\boxed{42}" agree;
* sql  — the result: each distinct query runs once, all concurrently, on the task's first synthesised database
  (shaped by the literals of *all* the queries, so every query sees the same rows); the key is the column count and
  the multiset of normalised rows (row order and column names ignored). A query that fails casts no vote;
* code — behaviour (as in AlphaCode's clustering, Li et al. 2022): each distinct program runs once in the sandbox on
  the argument lists of the public tests' calls to the entry point, and the key is the tuple of output reprs. A
  program that fails on every input casts no vote. With no public tests (or no entry point) there are no shared
  inputs, and the key falls back to the normalised source (formatting, comments and docstrings removed), so only
  textually equivalent programs agree;
* text — the answer, lower-cased with whitespace collapsed.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Hashable, Sequence

from thinktank._aio import gather_all
from thinktank.engine.engine import Context
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate
from thinktank.verifiers.math import canonical_answer
from thinktank.verifiers.sql import normalize

__all__ = ["Key", "answer_keys", "call_inputs", "source_key"]

Key = Hashable | None


async def answer_keys(
    ctx: Context, task: TaskInput, candidates: Sequence[Candidate], *, memo: dict[str, Key] | None = None
) -> list[Key]:
    """One key per candidate (None: no answer, or one that failed to run).

    `memo` (program -> key) lets a caller that votes repeatedly over a growing pool (`adaptive`) run each program
    only once; it is used for code only, since SQL keys depend on the whole set of queries.
    """
    if task.kind == "math":
        return [canonical_answer(c.text) if c.text.strip() else canonical_answer(c.answer) for c in candidates]
    if task.kind == "sql":
        return await _sql_keys(ctx, task, candidates)
    if task.kind == "code":
        return await _code_keys(ctx, task, candidates, {} if memo is None else memo)
    return [_text_key(c.answer) for c in candidates]


def _text_key(answer: str | None) -> Key:
    return re.sub(r"\s+", " ", answer.strip().lower()) if answer and answer.strip() else None


async def _sql_keys(ctx: Context, task: TaskInput, candidates: Sequence[Candidate]) -> list[Key]:
    queries = list(dict.fromkeys(c.answer for c in candidates if c.answer and c.answer.strip()))
    if not queries or not task.schema:
        return [None] * len(candidates)
    sql = ctx.tools.sql
    results = await gather_all(sql.execute(q, task.schema, hint_sqls=queries) for q in queries)
    keys: dict[str, Key] = {}
    for query, result in zip(queries, results, strict=True):
        rows = Counter(tuple(normalize(v) for v in row) for row in result.rows)
        keys[query] = ("rows", len(result.columns), frozenset(rows.items())) if result.ok else None
    return [keys.get(c.answer) if c.answer else None for c in candidates]


def call_inputs(task: TaskInput) -> list[str]:
    """Argument lists ("[1, 2], 3") of every call to the entry point in the public tests, in order, deduplicated."""
    found: list[str] = []
    for test in task.public_tests:
        try:
            tree = ast.parse(test)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == task.entry_point:
                args = [ast.unparse(a) for a in node.args]
                args += [f"{k.arg}={ast.unparse(k.value)}" if k.arg else f"**{ast.unparse(k.value)}" for k in node.keywords]
                found.append(", ".join(args))
    return list(dict.fromkeys(found))


def source_key(program: str) -> str:
    """The program's source with formatting, comments and docstrings normalised away (whitespace-collapsed if unparsable)."""
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return re.sub(r"\s+", " ", program).strip()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


async def _code_keys(ctx: Context, task: TaskInput, candidates: Sequence[Candidate], memo: dict[str, Key]) -> list[Key]:
    programs = list(dict.fromkeys(c.answer for c in candidates if c.answer and c.answer.strip()))
    inputs = call_inputs(task) if task.entry_point else []
    if not inputs:
        return [("source", source_key(c.answer)) if c.answer and c.answer.strip() else None for c in candidates]
    fresh = [p for p in programs if p not in memo]
    sandbox = ctx.tools.sandbox
    outputs = await gather_all(sandbox.call_outputs(p, task.entry_point or "", inputs) for p in fresh)
    for program, out in zip(fresh, outputs, strict=True):
        memo[program] = ("outputs", tuple(out)) if any(o is not None for o in out) else None
    return [memo.get(c.answer) if c.answer else None for c in candidates]
