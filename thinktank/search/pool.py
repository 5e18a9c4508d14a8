"""The sample pool: what a search replays, generated once through the real techniques and kept in SQLite.

    pool = SamplePool(run_dir / "pool.sqlite", problems, PoolSpec(models=["a", "b"], n=8))
    await pool.build(engine)                          # samples + verdicts + behaviour keys, generated tests + pass matrix
    pool.samples("a", 0.8, "HumanEval/0")             # what `generate {models: [a], n: 8, temperature: 0.8}` returns

Fidelity: every row comes from the technique code and requests an exported architecture makes (`Generate` with
seed 0, so sample i is drawn with seed i; `GenTests.write_tests`; `Rank` pointwise; `Repair.repair_one`), through the
Engine and its response cache, so pools and `eval` runs share cached samples. Per answer the pool keeps the public
verdict, the behaviour key `vote` groups by (`_equivalence.answer_keys`, hashed) and the HIDDEN verdict, which only
scores configurations and never feeds their selection logic. Judge scores and repair chains are filled on demand
(`ensure_judge`, `ensure_chain`); samples beyond the spec's n are an *extension*, counted as search cost. Rows are
committed per problem as they arrive, so a killed build loses only calls in flight. Costs are nominal: what a call
costs whether or not the response cache served it (`cached` says which were served).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field, field_validator

from thinktank._aio import gather_all
from thinktank._sqlite import open_sqlite
from thinktank.engine.budget import BudgetTracker
from thinktank.engine.engine import Context, Engine
from thinktank.engine.trace import TraceNode
from thinktank.eval.grading import Grader
from thinktank.exceptions import ConfigError, PoolError
from thinktank.kinds import kind_of
from thinktank.tasks.base import Problem
from thinktank.techniques.base import Candidate
from thinktank.techniques.gen_tests import GenTests, tests_from_replies
from thinktank.techniques.generate import Generate
from thinktank.techniques.rank import Rank
from thinktank.techniques.repair import Repair
from thinktank.techniques.verify_exec import public_check
from thinktank.types import Completion, GenerationRequest

__all__ = ["Answer", "Call", "Chain", "PoolError", "PoolProgress", "PoolSpec", "SamplePool", "TestSet"]

SCHEMA_VERSION = 1
JUDGE_MAX_CHARS = 3000  # Rank's default `max_chars`: what a pointwise judge is shown
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


class PoolSpec(BaseModel):
    """What the pool holds per problem; the search space never asks for more than this without extending it."""

    model_config = {"frozen": True}

    models: tuple[str, ...]
    temperatures: tuple[float, ...] = (0.0, 0.8)
    n: int = Field(8, ge=1, le=256)  # samples per (model, temperature > 0); greedy pools hold one
    max_tokens: int = Field(512, ge=1)  # of samples and generated tests
    test_replies: int = Field(8, ge=1, le=64)  # gen_tests replies per (tests model, problem)
    tests_temperature: float = Field(0.6, ge=0, le=2)
    judge_max_tokens: int = Field(512, ge=1)  # rank's default
    repair_max_tokens: int = Field(768, ge=1)  # repair's default
    repair_rounds: int = Field(3, ge=0, le=10)  # the space's largest; 0 keeps repair out of it
    # models pooled greedy only and offered only as greedy generators (e.g. a slow large model): no sampled
    # pools, generated tests, judge or repair calls from them
    greedy_models: tuple[str, ...] = ()

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0 <= t <= 2 for t in value) or len(set(value)) != len(value):
            raise ValueError(f"temperatures must be distinct values in [0, 2], at least one; got {value}")
        return value

    def size(self, temperature: float) -> int:
        return 1 if temperature == 0 else self.n

    def temperatures_of(self, model: str) -> tuple[float, ...]:
        return tuple(t for t in self.temperatures if t == 0) if model in self.greedy_models else self.temperatures

    @property
    def helper_models(self) -> tuple[str, ...]:
        """Models that may sample, write tests, judge and repair."""
        return tuple(m for m in self.models if m not in self.greedy_models)

    @property
    def hot(self) -> tuple[float, ...]:
        return tuple(t for t in self.temperatures if t > 0)


@dataclass(frozen=True)
class Call:
    """The cost of one model call. `latency_s` is None when the response cache served it."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float | None
    cached: bool

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Answer:
    """A candidate as a technique would hold it, with the evidence replay needs (hashes stand for equality)."""

    text: str
    answer: str | None
    key: str | None  # behaviour key (vote's grouping); None casts no vote
    public_passed: bool | None  # None: the problem has no public checks
    public_score: float
    hidden_passed: bool
    distinct: str  # `_prompting.distinct_key`: rank judges each distinct answer once
    show: str  # what a judge is shown
    call: Call

    @property
    def start(self) -> str:
        """The repair chain this answer starts: it depends on the answer only (on the text when there is none)."""
        return _digest(f"a:{self.answer}" if self.answer is not None else f"t:{self.text}")


@dataclass(frozen=True)
class TestSet:
    """Generated tests of one (model, problem): per-reply calls, the deduplicated tests, and how many the first k replies give."""

    replies: tuple[Call, ...]
    tests: tuple[str, ...]
    prefix: tuple[int, ...]  # prefix[k] = number of tests from replies[:k]


@dataclass(frozen=True)
class Chain:
    """Repair attempts from one start, in round order; it ends at the first attempt that passes the public checks."""

    attempts: tuple[Answer, ...]
    rounds: int  # rounds it was built for


@dataclass(frozen=True)
class _Cost:
    kind: str
    phase: str  # "pool" | "extension"
    stage: str  # "build" | "search": when it was generated
    call: Call


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _answer_hash(answer: str | None) -> str:
    return _digest(answer or "")


@dataclass
class _Logged:
    node: str
    index: int  # the call's seed: request seed + sample index
    text: str
    call: Call


@dataclass
class _Meter(Context):
    """A context that logs every completion with its full cost (cache hits looked up in the response cache)."""

    log: list[_Logged] = field(default_factory=list)

    async def generate(self, request: GenerationRequest) -> list[Completion]:
        keys = self.engine.cache_keys(request, self)  # before the call: what the engine looks up for it
        out = await super().generate(request)
        for c in out:
            call = self._call(request, c, keys[c.sample_index])
            self.log.append(_Logged(self.node.name, (request.seed or 0) + c.sample_index, c.text, call))
        return out

    def _call(self, request: GenerationRequest, c: Completion, key: str) -> Call:
        u = c.usage
        if not c.cached:
            return Call(request.model, u.prompt_tokens, u.completion_tokens, u.latency_s, False)
        hit = self.engine.cache.get(key) if self.engine.cache else None
        if hit is None:
            return Call(request.model, 0, u.saved_tokens, None, True)
        return Call(request.model, hit.prompt_tokens, hit.completion_tokens, None, True)

    def child(self, name: str) -> _Meter:
        return replace(self, node=self.node.child(name))  # the same log


def _meter(engine: Engine, name: str) -> _Meter:
    return _Meter(engine=engine, budget=BudgetTracker.start(None), node=TraceNode(name))


@dataclass
class _Info:
    """What is known about one answer of one problem (code keys depend on the answer only)."""

    key: str | None
    public_passed: bool | None
    public_score: float
    hidden_passed: bool


class PoolProgress(Protocol):
    """How `SamplePool.build` reports: one step per kind of work, advanced per finished problem."""

    def start(self, label: str, total: int) -> None: ...

    def advance(self) -> None: ...


class SamplePool:
    def __init__(
        self, path: str | Path, problems: Sequence[Problem], spec: PoolSpec, *, engine: Engine | None = None, concurrency: int = 8
    ) -> None:
        for kind in {p.kind: kind_of(p.input) for p in problems}.values():
            if kind.replay_obstacle:
                raise ConfigError(kind.replay_obstacle)
        self.path, self.spec, self.engine = Path(path), spec, engine
        self._limit = asyncio.Semaphore(concurrency)  # problems in flight: rows commit as they finish
        self.problems = {p.id: p for p in problems}
        self.stage = "build"
        self._db = open_sqlite(self.path, _SCHEMA, error=PoolError, what="sample pool", hint="delete it or use a new --run-dir")
        self._bind({"schema": SCHEMA_VERSION, "spec": spec.model_dump(mode="json"), "problems": sorted(self.problems)})
        self._samples: dict[tuple[str, float, str], list[Answer]] = {}
        self._tests: dict[tuple[str, str], TestSet] = {}
        self._runs: dict[tuple[str, str, str], tuple[bool, ...]] = {}
        self._judge: dict[tuple[str, str, str], tuple[float | None, Call]] = {}
        self._chains: dict[tuple[str, str, str], Chain] = {}
        self._info: dict[tuple[str, str | None], _Info] = {}
        self._costs: list[_Cost] = []
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

    def _load(self) -> None:
        db = self._db
        for model, temp, pid, _idx, *rest in db.execute("SELECT * FROM samples ORDER BY model, temperature, problem_id, idx"):
            answer, phase, stage = self._answer_row(model, pid, rest)
            self._samples.setdefault((model, temp, pid), []).append(answer)
            self._costs.append(_Cost("samples", phase, stage, answer.call))
        replies: dict[tuple[str, str], list[tuple[str, Call]]] = {}
        tests = db.execute("SELECT * FROM tests ORDER BY model, problem_id, idx")
        for model, pid, _idx, text, pt, ct, lat, cached, phase, stage in tests:
            call = Call(model, pt, ct, lat, bool(cached))
            replies.setdefault((model, pid), []).append((text, call))
            self._costs.append(_Cost("tests", phase, stage, call))
        for (model, pid), items in replies.items():
            if len(items) >= self.spec.test_replies and pid in self.problems:
                self._tests[(model, pid)] = self._test_set(pid, items)
        for model, pid, answer, results in db.execute("SELECT * FROM test_runs"):
            self._runs[(model, pid, answer)] = tuple(json.loads(results))
        for model, pid, shown, score, pt, ct, lat, cached, phase, stage in db.execute("SELECT * FROM judge"):
            call = Call(model, pt, ct, lat, bool(cached))
            self._judge[(model, pid, shown)] = (score, call)
            self._costs.append(_Cost("judge", phase, stage, call))
        attempts: dict[tuple[str, str, str], list[Answer]] = {}
        for model, pid, start, _round, *rest in db.execute("SELECT * FROM repairs ORDER BY model, problem_id, start, round"):
            answer, phase, stage = self._answer_row(model, pid, rest)
            attempts.setdefault((model, pid, start), []).append(answer)
            self._costs.append(_Cost("repair", phase, stage, answer.call))
        for model, pid, start, rounds in db.execute("SELECT * FROM chains"):
            self._chains[(model, pid, start)] = Chain(tuple(attempts.get((model, pid, start), [])), rounds)

    def _answer_row(self, model: str, pid: str, row: Sequence[Any]) -> tuple[Answer, str, str]:
        text, answer, key, pub, score, hidden, distinct, shown, call_model, pt, ct, lat, cached, phase, stage = row
        item = Answer(text, answer, key, None if pub is None else bool(pub), score, bool(hidden), distinct, shown,
                      Call(call_model, pt, ct, lat, bool(cached)))  # fmt: skip
        if self._keyed_by_answer(pid):
            self._info.setdefault((pid, answer), _Info(key, item.public_passed, score, item.hidden_passed))
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

    # --- reading ----------------------------------------------------------------------------------

    def samples(self, model: str, temperature: float, problem_id: str) -> list[Answer]:
        """Samples in seed order (index i was drawn with seed i)."""
        return self._samples.get((model, temperature, problem_id), [])

    def tests(self, model: str, problem_id: str) -> TestSet | None:
        return self._tests.get((model, problem_id))

    def test_results(self, model: str, problem_id: str, answer: str) -> tuple[bool, ...] | None:
        """Per test of `tests(model, problem_id)`: did `answer` pass it (run once, all tests, in the sandbox)."""
        return self._runs.get((model, problem_id, _answer_hash(answer)))

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
            batched = backend.supports_native_n and getattr(backend, "seeded_native_n", False)
            return max(1, int(getattr(backend, "max_n_per_call", 1))) if batched else 1
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

    def costs(self) -> list[_Cost]:
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

    # --- generating ---------------------------------------------------------------------------------

    def _engine(self) -> Engine:
        if self.engine is None:
            raise PoolError(f"the pool {self.path} lacks data a configuration needs and has no engine to generate it")
        return self.engine

    def _problem(self, pid: str) -> Problem:
        if pid not in self.problems:
            raise PoolError(f"problem {pid!r} is not in the pool {self.path}")
        return self.problems[pid]

    async def _answers(self, problem: Problem, items: Sequence[tuple[str, Call]]) -> list[Answer]:
        """Extract, check (public), key and grade (hidden) replies — each distinct program once per pool."""
        engine, task, pid = self._engine(), problem.input, problem.id
        kind, resources = kind_of(task), engine.resources
        by_answer_only = kind.keyed_by_answer
        cands = [Candidate(text, kind.extract(task, text), call.model, "generate") for text, call in items]
        fresh = list(dict.fromkeys(c.answer for c in cands if (pid, c.answer) not in self._info or not by_answer_only))
        by_answer = {c.answer: c for c in cands}
        public = kind.has_public_checks(task)
        verdicts = await gather_all(kind.public_check(resources, task, a) for a in fresh) if public else []
        hidden = await gather_all(Grader(resources).grade(problem, a) for a in fresh)
        fresh_cands = [by_answer[a] for a in fresh]
        fresh_keys = await kind.answer_keys(resources, task, fresh_cands, {}) if by_answer_only else []
        info: dict[str | None, _Info] = {}
        for i, a in enumerate(fresh):
            key = _key_hash(fresh_keys[i]) if by_answer_only else None
            v = verdicts[i] if public else None
            info[a] = _Info(key, v.passed if v else None, v.score if v else 0.0, hidden[i].passed)
            if by_answer_only:
                self._info[(pid, a)] = info[a]
        keys = [] if by_answer_only else [_key_hash(k) for k in await kind.answer_keys(resources, task, cands, {})]
        out = []
        for i, (c, (_, call)) in enumerate(zip(cands, items, strict=True)):
            known = info.get(c.answer) or self._info[(pid, c.answer)]
            key = known.key if by_answer_only else keys[i]
            shown = _digest(kind.show(c, JUDGE_MAX_CHARS))
            out.append(Answer(c.text, c.answer, key, known.public_passed, known.public_score, known.hidden_passed,
                              _digest(kind.distinct_key(c)), shown, call))  # fmt: skip
        return out

    async def ensure_samples(self, model: str, temperature: float, upto: int, problem_ids: Iterable[str]) -> None:
        """Samples 0..upto-1 for each problem; indices past the spec's size are an extension (search cost)."""
        await self._each(problem_ids, partial(self._fill_pid, model=model, temperature=temperature, upto=upto))

    async def _fill_pid(self, pid: str, *, model: str, temperature: float, upto: int) -> None:
        await self._fill_samples(self._problem(pid), model, temperature, upto)

    async def _fill_samples(self, problem: Problem, model: str, temperature: float, upto: int) -> None:
        have = len(self.samples(model, temperature, problem.id))
        if have >= upto:
            return
        engine = self._engine()
        ctx = _meter(engine, "generate")
        # with a cache, ask for n=upto from seed 0 as the architecture does (same cache keys; the first `have` are hits)
        first = 0 if engine.cache is not None and ctx.use_cache else have
        gen = Generate([model], n=upto - first, temperature=temperature, max_tokens=self.spec.max_tokens, seed=first)
        await gen.apply(ctx, problem.input, [])
        fresh = sorted((e for e in ctx.log if e.index >= have), key=lambda e: e.index)
        if not fresh:
            return
        answers = await self._answers(problem, [(e.text, e.call) for e in fresh])
        size = self.spec.size(temperature)
        rows = []
        for e, a in zip(fresh, answers, strict=True):
            phase = "pool" if e.index < size else "extension"
            rows.append((model, temperature, problem.id, e.index, *self._answer_values(a, phase, self.stage)))
        self._write([(f"INSERT INTO samples VALUES ({', '.join('?' * len(rows[0]))})", rows)])
        self._samples.setdefault((model, temperature, problem.id), []).extend(answers)
        for e, a in zip(fresh, answers, strict=True):
            self._costs.append(_Cost("samples", "pool" if e.index < size else "extension", self.stage, a.call))
        self._rates = None

    def _test_set(self, pid: str, items: Sequence[tuple[str, Call]]) -> TestSet:
        task = self.problems[pid].input
        texts = [t for t, _ in items]
        prefix = tuple(len(tests_from_replies(task, texts[:k])) for k in range(len(texts) + 1))
        return TestSet(tuple(c for _, c in items), tuple(tests_from_replies(task, texts)), prefix)

    async def ensure_tests(self, model: str, problem_ids: Iterable[str]) -> None:
        """`spec.test_replies` test-writing replies per problem, as `gen_tests {n_tests: k}` asks (reply i: seed i)."""
        await self._each(problem_ids, partial(self._fill_tests_pid, model=model))

    async def _fill_tests_pid(self, pid: str, *, model: str) -> None:
        await self._fill_tests(self._problem(pid), model)

    async def _fill_tests(self, problem: Problem, model: str) -> None:
        task = problem.input
        if (model, problem.id) in self._tests or not kind_of(task).takes_unit_tests(task):
            return
        ctx = _meter(self._engine(), "gen_tests")
        gen = GenTests([model], n_tests=self.spec.test_replies, temperature=self.spec.tests_temperature,
                       max_tokens=self.spec.max_tokens)  # fmt: skip
        await gen.write_tests(ctx, task)
        log = sorted(ctx.log, key=lambda e: e.index)
        rows = [(model, problem.id, e.index, e.text, *_call_values(e.call, "pool", self.stage)) for e in log]
        self._write([("INSERT OR REPLACE INTO tests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)])
        self._tests[(model, problem.id)] = self._test_set(problem.id, [(e.text, e.call) for e in log])
        self._costs += [_Cost("tests", "pool", self.stage, e.call) for e in log]
        self._rates = None

    async def ensure_test_runs(self, model: str, problem_id: str, answers: Iterable[str | None]) -> None:
        """Run each distinct program once against all of the (model, problem)'s generated tests."""
        tests = self.tests(model, problem_id)
        if tests is None or not tests.tests:
            return
        todo = [a for a in dict.fromkeys(answers) if a and (model, problem_id, _answer_hash(a)) not in self._runs]
        if not todo:
            return
        task, resources = self._problem(problem_id).input, self._engine().resources
        kind = kind_of(task)
        verdicts = await gather_all(kind.run_unit_tests(resources, task, a, list(tests.tests)) for a in todo)
        pairs = list(zip(todo, verdicts, strict=True))
        rows = [(model, problem_id, _answer_hash(a), json.dumps(v.details["results"])) for a, v in pairs]
        self._write([("INSERT OR REPLACE INTO test_runs VALUES (?, ?, ?, ?)", rows)])
        for a, v in zip(todo, verdicts, strict=True):
            self._runs[(model, problem_id, _answer_hash(a))] = tuple(v.details["results"])

    async def ensure_judge(self, model: str, problem_id: str, answers: Iterable[Answer]) -> None:
        """Pointwise judge scores (`rank {mode: pointwise}` with its defaults) for each distinct shown answer."""
        problem = self._problem(problem_id)
        todo = {a.show: a for a in answers if (model, problem_id, a.show) not in self._judge}
        if not todo:
            return

        async def one(a: Answer) -> tuple[float | None, Call]:
            ctx = _meter(self._engine(), "rank")
            rank = Rank(model, mode="pointwise", max_tokens=self.spec.judge_max_tokens)
            (judged,) = await rank.apply(ctx, problem.input, [Candidate(a.text, a.answer, a.call.model, "generate")])
            return judged.scores.get(rank.name), ctx.log[0].call

        results = await gather_all(one(a) for a in todo.values())
        judged = list(zip(todo, results, strict=True))
        rows = [(model, problem_id, s, score, *_call_values(call, "pool", self.stage)) for s, (score, call) in judged]
        self._write([("INSERT OR REPLACE INTO judge VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)])
        for s, (score, call) in zip(todo, results, strict=True):
            self._judge[(model, problem_id, s)] = (score, call)
            self._costs.append(_Cost("judge", "pool", self.stage, call))
        self._rates = None

    async def ensure_chain(self, model: str, problem_id: str, start: Answer) -> None:
        """`Repair.repair_one` from `start` for `spec.repair_rounds` rounds (or until an attempt passes), every attempt kept."""
        problem = self._problem(problem_id)
        if (model, problem_id, start.start) in self._chains:
            return
        task = problem.input
        ctx = _meter(self._engine(), "repair")
        verdict = await public_check(ctx, task, start.answer)
        repair = Repair(model, rounds=self.spec.repair_rounds, max_tokens=self.spec.repair_max_tokens)
        await repair.repair_one(ctx, task, Candidate(start.text, start.answer, start.call.model, "generate"), verdict)
        rounds = sorted((e for e in ctx.log if e.node.startswith("round")), key=lambda e: int(e.node.removeprefix("round")))
        attempts = await self._answers(problem, [(e.text, e.call) for e in rounds])
        rows = [
            (model, problem_id, start.start, r, *self._answer_values(a, "pool", self.stage)) for r, a in enumerate(attempts, 1)
        ]
        statements: list[tuple[str, Sequence[tuple[Any, ...]]]] = [
            ("INSERT INTO chains VALUES (?, ?, ?, ?)", [(model, problem_id, start.start, self.spec.repair_rounds)])
        ]
        if rows:
            statements.append((f"INSERT INTO repairs VALUES ({', '.join('?' * len(rows[0]))})", rows))
        self._write(statements)
        self._chains[(model, problem_id, start.start)] = Chain(tuple(attempts), self.spec.repair_rounds)
        self._costs += [_Cost("repair", "pool", self.stage, a.call) for a in attempts]
        self._rates = None

    async def _each(
        self, problem_ids: Iterable[str], fill: Callable[[str], Awaitable[None]], on_done: Callable[[], None] | None = None
    ) -> None:
        async def one(pid: str) -> None:
            async with self._limit:
                await fill(pid)
            if on_done:
                on_done()

        await gather_all(one(pid) for pid in problem_ids)

    async def build(self, engine: Engine | None = None, *, progress: PoolProgress | None = None) -> None:
        """Everything eager: samples of every (model, temperature), then generated tests and their pass matrix."""
        self.engine = engine or self.engine
        per_call = {m: self.per_call(m) for m in self.spec.models}
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('per_call', ?)", (json.dumps(per_call),))
        ids = sorted(self.problems)
        tick = progress.advance if progress else None
        for model in self.spec.models:
            for temperature in self.spec.temperatures_of(model):
                size = self.spec.size(temperature)
                todo = [pid for pid in ids if len(self.samples(model, temperature, pid)) < size]
                if progress:
                    progress.start(f"samples {model} T={temperature:g} ×{size}", len(todo))
                await self._each(todo, partial(self._fill_pid, model=model, temperature=temperature, upto=size), tick)
        code = [pid for pid in ids if kind_of(self.problems[pid].input).takes_unit_tests(self.problems[pid].input)]
        if not code:
            return
        for model in self.spec.helper_models:
            todo = [pid for pid in code if (model, pid) not in self._tests]
            if progress:
                progress.start(f"generated tests {model} ×{self.spec.test_replies}", len(todo))
            await self._each(todo, partial(self._fill_tests_pid, model=model), tick)
        if progress:
            progress.start("running generated tests on the samples", len(code))

        async def runs(pid: str) -> None:
            answers = [a.answer for gm in self.spec.helper_models for t in self.spec.hot for a in self.samples(gm, t, pid)]
            for model in self.spec.helper_models:
                await self.ensure_test_runs(model, pid, answers)

        await self._each(code, runs, tick)


def _call_values(call: Call, phase: str, stage: str) -> tuple[Any, ...]:
    return (call.prompt_tokens, call.completion_tokens, call.latency_s, int(call.cached), phase, stage)


def _key_hash(key: Any) -> str | None:
    return None if key is None else _digest(repr(key))
