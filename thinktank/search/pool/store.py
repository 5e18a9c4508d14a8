"""The pool's SQLite file and what is read from it: rows in, answers, tests, judge scores, chains and costs out."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinktank._sqlite import open_sqlite
from thinktank.engine.engine import Engine
from thinktank.exceptions import ConfigError, PoolError
from thinktank.kinds import kind_of
from thinktank.search.pool.types import Answer, Call, Chain, Cost, Info, PoolSpec, TestSet, answer_hash
from thinktank.tasks.base import Problem
from thinktank.techniques.gen_tests import tests_from_replies

__all__ = ["POOL_TABLES", "PoolRows", "PoolStore"]

#: the tables a problem's rows are in (all but `meta`)
POOL_TABLES = ("samples", "tests", "test_runs", "judge", "repairs", "chains")

SCHEMA_VERSION = 1
_ANSWER_COLUMNS = """text TEXT NOT NULL, answer TEXT, key TEXT, public_passed INTEGER, public_score REAL NOT NULL,
    hidden_passed INTEGER NOT NULL, distinct_key TEXT NOT NULL, show TEXT NOT NULL, call_model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, latency_s REAL, cached INTEGER NOT NULL,
    phase TEXT NOT NULL, stage TEXT NOT NULL"""
_CALL_COLUMNS = """prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, latency_s REAL,
    cached INTEGER NOT NULL, phase TEXT NOT NULL, stage TEXT NOT NULL"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (model TEXT NOT NULL, temperature REAL NOT NULL, problem_id TEXT NOT NULL,
    idx INTEGER NOT NULL, {_ANSWER_COLUMNS}, PRIMARY KEY (model, temperature, problem_id, idx));
CREATE TABLE IF NOT EXISTS tests (model TEXT NOT NULL, problem_id TEXT NOT NULL, idx INTEGER NOT NULL, text TEXT NOT NULL,
    {_CALL_COLUMNS}, PRIMARY KEY (model, problem_id, idx));
CREATE TABLE IF NOT EXISTS test_runs (model TEXT NOT NULL, problem_id TEXT NOT NULL, answer TEXT NOT NULL,
    results TEXT NOT NULL, PRIMARY KEY (model, problem_id, answer));
CREATE TABLE IF NOT EXISTS judge (model TEXT NOT NULL, problem_id TEXT NOT NULL, show TEXT NOT NULL, score REAL,
    {_CALL_COLUMNS}, PRIMARY KEY (model, problem_id, show));
CREATE TABLE IF NOT EXISTS repairs (model TEXT NOT NULL, problem_id TEXT NOT NULL, start TEXT NOT NULL, round INTEGER NOT NULL,
    {_ANSWER_COLUMNS}, PRIMARY KEY (model, problem_id, start, round));
CREATE TABLE IF NOT EXISTS chains (model TEXT NOT NULL, problem_id TEXT NOT NULL, start TEXT NOT NULL,
    rounds INTEGER NOT NULL, PRIMARY KEY (model, problem_id, start));
"""


@dataclass(frozen=True)
class PoolRows:
    """A pool's rows by table (columns in the tables' order), and how many samples a backend call carried per model."""

    tables: dict[str, list[tuple[Any, ...]]]
    per_call: dict[str, int]


class PoolStore:
    """The pool's rows, loaded at open and written per problem; `SamplePool` adds the generating."""

    def __init__(self, path: str | Path, problems: Sequence[Problem], spec: PoolSpec, *, engine: Engine | None = None) -> None:
        self.path, self.spec, self.engine = Path(path), spec, engine
        self.problems = {p.id: p for p in problems}
        self.stage = "build"
        self._db = open_sqlite(self.path, _SCHEMA, error=PoolError, what="sample pool", hint="delete it or use a new --run-dir")
        self._bind({"schema": SCHEMA_VERSION, "spec": spec.model_dump(mode="json"), "problems": sorted(self.problems)})
        self._samples: dict[tuple[str, float, str], list[Answer]] = {}
        self._tests: dict[tuple[str, str], TestSet] = {}
        self._runs: dict[tuple[str, str, str], tuple[bool, ...]] = {}
        self._judge: dict[tuple[str, str, str], tuple[float | None, Call]] = {}
        self._chains: dict[tuple[str, str, str], Chain] = {}
        self._info: dict[tuple[str, str | None], Info] = {}
        self._costs: list[Cost] = []
        self._rates: dict[str, float] | None = None
        self._load()

    # --- persistence ------------------------------------------------------------------------------

    def _bind(self, config: dict[str, Any]) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('config', ?)", (json.dumps(config),))
            return
        stored = json.loads(row[0])
        if stored != config:
            changed = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
            raise ConfigError(
                f"{self.path} holds a pool for different settings ({', '.join(changed)} differ); use another --run-dir"
            )

    def _load(self, problem_ids: Sequence[str] | None = None) -> None:
        """Read the rows (of `problem_ids` only, when given) into memory."""
        db = self._db
        marks = "" if problem_ids is None else f" WHERE problem_id IN ({', '.join('?' * len(problem_ids))})"
        args = tuple(problem_ids or ())

        def rows(table: str, order: str = "") -> Iterable[Any]:
            return db.execute(f"SELECT * FROM {table}{marks}{' ORDER BY ' + order if order else ''}", args)

        for model, temp, pid, _idx, *rest in rows("samples", "model, temperature, problem_id, idx"):
            answer, phase, stage = self._answer_row(model, pid, rest)
            self._samples.setdefault((model, temp, pid), []).append(answer)
            self._costs.append(Cost("samples", phase, stage, answer.call))
        replies: dict[tuple[str, str], list[tuple[str, Call]]] = {}
        tests = rows("tests", "model, problem_id, idx")
        for model, pid, _idx, text, pt, ct, lat, cached, phase, stage in tests:
            call = Call(model, pt, ct, lat, bool(cached))
            replies.setdefault((model, pid), []).append((text, call))
            self._costs.append(Cost("tests", phase, stage, call))
        for (model, pid), items in replies.items():
            if len(items) >= self.spec.test_replies and pid in self.problems:
                self._tests[(model, pid)] = self._test_set(pid, items)
        for model, pid, answer, results in rows("test_runs"):
            self._runs[(model, pid, answer)] = tuple(json.loads(results))
        for model, pid, shown, score, pt, ct, lat, cached, phase, stage in rows("judge"):
            call = Call(model, pt, ct, lat, bool(cached))
            self._judge[(model, pid, shown)] = (score, call)
            self._costs.append(Cost("judge", phase, stage, call))
        attempts: dict[tuple[str, str, str], list[Answer]] = {}
        for model, pid, start, _round, *rest in rows("repairs", "model, problem_id, start, round"):
            answer, phase, stage = self._answer_row(model, pid, rest)
            attempts.setdefault((model, pid, start), []).append(answer)
            self._costs.append(Cost("repair", phase, stage, answer.call))
        for model, pid, start, rounds in rows("chains"):
            self._chains[(model, pid, start)] = Chain(tuple(attempts.get((model, pid, start), [])), rounds)

    def _answer_row(self, model: str, pid: str, row: Sequence[Any]) -> tuple[Answer, str, str]:
        text, answer, key, pub, score, hidden, distinct, shown, call_model, pt, ct, lat, cached, phase, stage = row
        item = Answer(text, answer, key, None if pub is None else bool(pub), score, bool(hidden), distinct, shown,
                      Call(call_model, pt, ct, lat, bool(cached)))  # fmt: skip
        if self._keyed_by_answer(pid):
            self._info.setdefault((pid, answer), Info(key, item.public_passed, score, item.hidden_passed))
        return item, phase, stage

    def _keyed_by_answer(self, pid: str) -> bool:
        """Whether the problem's answers have one key each, whatever the other answers (then kept per answer)."""
        problem = self.problems.get(pid)
        return problem is not None and kind_of(problem.input).keyed_by_answer

    @staticmethod
    def _answer_values(a: Answer, phase: str, stage: str) -> tuple[Any, ...]:
        c = a.call
        pub = None if a.public_passed is None else int(a.public_passed)
        return (a.text, a.answer, a.key, pub, a.public_score, int(a.hidden_passed), a.distinct, a.show, c.model,
                c.prompt_tokens, c.completion_tokens, c.latency_s, int(c.cached), phase, stage)  # fmt: skip

    def _write(self, statements: list[tuple[str, Sequence[tuple[Any, ...]]]]) -> None:
        try:
            with self._db:  # one transaction: a problem's rows are whole or absent
                self._db.execute("BEGIN")
                for sql, rows in statements:
                    self._db.executemany(sql, rows)
        except sqlite3.DatabaseError as exc:
            raise PoolError(f"could not write to the sample pool {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    # --- a pool filled elsewhere (`search --ray`: workers fill, the driver commits) -------------------

    def unbuilt(self) -> list[str]:
        """Problems with no row yet (a pool filled elsewhere sends these); `build` finishes any partly filled one."""
        started = {pid for (_, _, pid) in self._samples} | {pid for (_, pid) in self._tests}
        return [pid for pid in sorted(self.problems) if pid not in started]

    def rows(self) -> PoolRows:
        """Every row of the pool's tables (a worker's one-problem pool, shipped to the driver)."""
        tables = {t: [tuple(r) for r in self._db.execute(f"SELECT * FROM {t}")] for t in POOL_TABLES}
        return PoolRows(tables, dict(self._meta("per_call", {})))

    def add_rows(self, batch: Sequence[PoolRows]) -> None:
        """Commit the rows other pools made for problems this one has no row of, in one transaction, and read them in.
        A row whose key (model, problem, seed or index) is already here is refused: each is committed once."""
        pids = sorted({row[1 if t in ("tests", "test_runs", "judge", "repairs", "chains") else 2]
                       for rows in batch for t, values in rows.tables.items() for row in values})  # fmt: skip
        if started := set(pids) - set(self.unbuilt()):
            raise PoolError(f"the pool {self.path} already has rows of {', '.join(sorted(started))}")
        per_call: dict[str, int] = dict(self._meta("per_call", {}))
        statements: list[tuple[str, Sequence[tuple[Any, ...]]]] = []
        for rows in batch:
            per_call.update(rows.per_call)
            for table, values in rows.tables.items():
                if values:
                    statements.append((f"INSERT INTO {table} VALUES ({', '.join('?' * len(values[0]))})", values))
        statements.append(("INSERT OR REPLACE INTO meta VALUES ('per_call', ?)", [(json.dumps(per_call),)]))
        self._write(statements)
        self._load(pids)
        self._rates = None

    def _test_set(self, pid: str, items: Sequence[tuple[str, Call]]) -> TestSet:
        task = self.problems[pid].input
        texts = [t for t, _ in items]
        prefix = tuple(len(tests_from_replies(task, texts[:k])) for k in range(len(texts) + 1))
        return TestSet(tuple(c for _, c in items), tuple(tests_from_replies(task, texts)), prefix)

    # --- reading ----------------------------------------------------------------------------------

    def samples(self, model: str, temperature: float, problem_id: str) -> list[Answer]:
        """Samples in seed order (index i was drawn with seed i)."""
        return self._samples.get((model, temperature, problem_id), [])

    def tests(self, model: str, problem_id: str) -> TestSet | None:
        return self._tests.get((model, problem_id))

    def test_results(self, model: str, problem_id: str, answer: str) -> tuple[bool, ...] | None:
        """Per test of `tests(model, problem_id)`: did `answer` pass it (run once, all tests, in the sandbox)."""
        return self._runs.get((model, problem_id, answer_hash(answer)))

    def judge(self, model: str, problem_id: str, shown: str) -> tuple[float | None, Call] | None:
        """Pointwise score (None: unparseable) a judge gave the answer shown as `shown`, and that call's cost."""
        return self._judge.get((model, problem_id, shown))

    def chain(self, model: str, problem_id: str, start: str) -> Chain | None:
        return self._chains.get((model, problem_id, start))

    def per_call(self, model: str) -> int:
        """How many samples of one seeded request a backend call carries (llama-server: up to its slots; else 1).

        A request for n samples then makes ceil(n / per_call) calls, each paying the prompt once.
        """
        if self.engine is not None:
            try:
                backend = self.engine.backend_for(model)
            except ConfigError:
                return 1
            caps = backend.capabilities
            return max(1, caps.max_n_per_call) if caps.supports_native_n and caps.seeded_native_n else 1
        return int(self._meta("per_call", {}).get(model, 1))

    def seconds_per_token(self, model: str) -> float:
        """Measured call latency per completion token of a call's longest choice (for calls the cache served)."""
        if self._rates is None:
            spent: dict[str, list[float]] = {}
            for group in self._call_groups():
                head = group[0]
                if head.latency_s and not head.cached:
                    pair = spent.setdefault(head.model, [0.0, 0.0])
                    pair[0] += head.latency_s
                    pair[1] += max(c.completion_tokens for c in group)
            self._rates = {m: s / t for m, (s, t) in spent.items() if t}
        return self._rates.get(model, 0.0)

    def _call_groups(self) -> Iterable[list[Call]]:
        """Recorded backend calls: a call's first sample carries its prompt tokens and latency."""
        lists = [[a.call for a in answers] for answers in self._samples.values()]
        lists += [list(t.replies) for t in self._tests.values()]
        for calls in lists:
            group: list[Call] = []
            for c in calls:
                if c.prompt_tokens and group:
                    yield group
                    group = []
                group.append(c)
            if group:
                yield group
        yield from ([call] for _, call in self._judge.values())
        yield from ([a.call] for chain in self._chains.values() for a in chain.attempts)

    def _meta(self, key: str, default: Any) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def costs(self) -> list[Cost]:
        return list(self._costs)

    def cost_summary(self) -> dict[str, Any]:
        """Nominal tokens by phase ("pool" = pool cost, "extension" = search cost), with when and how they were spent."""
        out: dict[str, Any] = {}
        for phase in ("pool", "extension"):
            items = [c for c in self._costs if c.phase == phase]
            out[phase] = {
                "tokens": sum(c.call.tokens for c in items),
                "calls": len(items),
                "fresh_tokens": sum(c.call.tokens for c in items if not c.call.cached),
                "during_search_tokens": sum(c.call.tokens for c in items if c.stage == "search"),
                "by_kind": {k: sum(c.call.tokens for c in items if c.kind == k) for k in ("samples", "tests", "judge", "repair")},
            }
        pool_tokens = out["pool"]["tokens"]
        out["search_over_pool"] = out["extension"]["tokens"] / pool_tokens if pool_tokens else 0.0
        # the stricter reading: everything generated once the search started, over what the eager build generated
        built = pool_tokens - out["pool"]["during_search_tokens"]
        later = out["pool"]["during_search_tokens"] + out["extension"]["during_search_tokens"]
        out["during_search_over_build"] = later / built if built else 0.0
        return out
