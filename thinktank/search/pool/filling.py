"""Filling the pool: samples, generated tests and their runs, judge scores and repair chains, through the real techniques."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from thinktank._aio import gather_all
from thinktank.engine.engine import Engine
from thinktank.eval.grading import Grader
from thinktank.exceptions import ConfigError, PoolError
from thinktank.kinds import kind_of
from thinktank.search.pool.metering import Meter, meter
from thinktank.search.pool.store import PoolStore
from thinktank.search.pool.types import (
    Answer,
    Call,
    Chain,
    Cost,
    Info,
    PoolProgress,
    PoolSpec,
    answer_hash,
    call_values,
    digest,
    key_hash,
)
from thinktank.tasks.base import Problem
from thinktank.techniques.base import Candidate
from thinktank.techniques.gen_tests import GenTests
from thinktank.techniques.generate import Generate
from thinktank.techniques.rank import Rank
from thinktank.techniques.repair import Repair
from thinktank.techniques.verify_exec import public_check
from thinktank.telemetry import TraceSink

__all__ = ["JUDGE_MAX_CHARS", "SamplePool"]

JUDGE_MAX_CHARS = 3000  # Rank's default `max_chars`: what a pointwise judge is shown


class SamplePool(PoolStore):
    def __init__(
        self, path: str | Path, problems: Sequence[Problem], spec: PoolSpec, *, engine: Engine | None = None,
        concurrency: int = 8, telemetry: TraceSink | None = None,
    ) -> None:  # fmt: skip
        for kind in {p.kind: kind_of(p.input) for p in problems}.values():
            if kind.replay_obstacle:
                raise ConfigError(kind.replay_obstacle)
        super().__init__(path, problems, spec, engine=engine)
        self._limit = asyncio.Semaphore(concurrency)  # problems in flight: rows commit as they finish
        self.telemetry = telemetry  # each fill's calls, as one trace

    # --- generating ---------------------------------------------------------------------------------

    def _engine(self) -> Engine:
        if self.engine is None:
            raise PoolError(f"the pool {self.path} lacks data a configuration needs and has no engine to generate it")
        return self.engine

    def _sent(self, ctx: Meter, fill: str, problem_id: str, model: str) -> None:
        """Export one fill's trace (its calls are the search's cost) if traces are exported."""
        ctx.node.close()
        if self.telemetry is not None:
            attributes = {"thinktank.pool.fill": fill, "thinktank.problem.id": problem_id, "thinktank.search.stage": self.stage,
                          "gen_ai.request.model": model}  # fmt: skip
            self.telemetry.export(ctx.node, attributes=attributes)

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
        info: dict[str | None, Info] = {}
        for i, a in enumerate(fresh):
            key = key_hash(fresh_keys[i]) if by_answer_only else None
            v = verdicts[i] if public else None
            info[a] = Info(key, v.passed if v else None, v.score if v else 0.0, hidden[i].passed)
            if by_answer_only:
                self._info[(pid, a)] = info[a]
        keys = [] if by_answer_only else [key_hash(k) for k in await kind.answer_keys(resources, task, cands, {})]
        out = []
        for i, (c, (_, call)) in enumerate(zip(cands, items, strict=True)):
            known = info.get(c.answer) or self._info[(pid, c.answer)]
            key = known.key if by_answer_only else keys[i]
            shown = digest(kind.show(c, JUDGE_MAX_CHARS))
            out.append(Answer(c.text, c.answer, key, known.public_passed, known.public_score, known.hidden_passed,
                              digest(kind.distinct_key(c)), shown, call))  # fmt: skip
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
        ctx = meter(engine, "generate")
        # with a cache, ask for n=upto from seed 0 as the architecture does (same cache keys; the first `have` are hits)
        first = 0 if engine.cache is not None and ctx.use_cache else have
        gen = Generate([model], n=upto - first, temperature=temperature, max_tokens=self.spec.max_tokens, seed=first)
        await gen.apply(ctx, problem.input, [])
        self._sent(ctx, "samples", problem.id, model)
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
            self._costs.append(Cost("samples", "pool" if e.index < size else "extension", self.stage, a.call))
        self._rates = None

    async def ensure_tests(self, model: str, problem_ids: Iterable[str]) -> None:
        """`spec.test_replies` test-writing replies per problem, as `gen_tests {n_tests: k}` asks (reply i: seed i)."""
        await self._each(problem_ids, partial(self._fill_tests_pid, model=model))

    async def _fill_tests_pid(self, pid: str, *, model: str) -> None:
        await self._fill_tests(self._problem(pid), model)

    async def _fill_tests(self, problem: Problem, model: str) -> None:
        task = problem.input
        if (model, problem.id) in self._tests or not kind_of(task).takes_unit_tests(task):
            return
        ctx = meter(self._engine(), "gen_tests")
        gen = GenTests([model], n_tests=self.spec.test_replies, temperature=self.spec.tests_temperature,
                       max_tokens=self.spec.max_tokens)  # fmt: skip
        await gen.write_tests(ctx, task)
        self._sent(ctx, "tests", problem.id, model)
        log = sorted(ctx.log, key=lambda e: e.index)
        rows = [(model, problem.id, e.index, e.text, *call_values(e.call, "pool", self.stage)) for e in log]
        self._write([("INSERT OR REPLACE INTO tests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)])
        self._tests[(model, problem.id)] = self._test_set(problem.id, [(e.text, e.call) for e in log])
        self._costs += [Cost("tests", "pool", self.stage, e.call) for e in log]
        self._rates = None

    async def ensure_test_runs(self, model: str, problem_id: str, answers: Iterable[str | None]) -> None:
        """Run each distinct program once against all of the (model, problem)'s generated tests."""
        tests = self.tests(model, problem_id)
        if tests is None or not tests.tests:
            return
        todo = [a for a in dict.fromkeys(answers) if a and (model, problem_id, answer_hash(a)) not in self._runs]
        if not todo:
            return
        task, resources = self._problem(problem_id).input, self._engine().resources
        kind = kind_of(task)
        verdicts = await gather_all(kind.run_unit_tests(resources, task, a, list(tests.tests)) for a in todo)
        pairs = list(zip(todo, verdicts, strict=True))
        rows = [(model, problem_id, answer_hash(a), json.dumps(v.details["results"])) for a, v in pairs]
        self._write([("INSERT OR REPLACE INTO test_runs VALUES (?, ?, ?, ?)", rows)])
        for a, v in zip(todo, verdicts, strict=True):
            self._runs[(model, problem_id, answer_hash(a))] = tuple(v.details["results"])

    async def ensure_judge(self, model: str, problem_id: str, answers: Iterable[Answer]) -> None:
        """Pointwise judge scores (`rank {mode: pointwise}` with its defaults) for each distinct shown answer."""
        problem = self._problem(problem_id)
        todo = {a.show: a for a in answers if (model, problem_id, a.show) not in self._judge}
        if not todo:
            return

        async def one(a: Answer) -> tuple[float | None, Call]:
            ctx = meter(self._engine(), "rank")
            rank = Rank(model, mode="pointwise", max_tokens=self.spec.judge_max_tokens)
            (judged,) = await rank.apply(ctx, problem.input, [Candidate(a.text, a.answer, a.call.model, "generate")])
            self._sent(ctx, "judge", problem_id, model)
            return judged.scores.get(rank.name), ctx.log[0].call

        results = await gather_all(one(a) for a in todo.values())
        judged = list(zip(todo, results, strict=True))
        rows = [(model, problem_id, s, score, *call_values(call, "pool", self.stage)) for s, (score, call) in judged]
        self._write([("INSERT OR REPLACE INTO judge VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)])
        for s, (score, call) in zip(todo, results, strict=True):
            self._judge[(model, problem_id, s)] = (score, call)
            self._costs.append(Cost("judge", "pool", self.stage, call))
        self._rates = None

    async def ensure_chain(self, model: str, problem_id: str, start: Answer) -> None:
        """`Repair.repair_one` from `start` for `spec.repair_rounds` rounds (or until an attempt passes), every attempt kept."""
        problem = self._problem(problem_id)
        if (model, problem_id, start.start) in self._chains:
            return
        task = problem.input
        ctx = meter(self._engine(), "repair")
        verdict = await public_check(ctx, task, start.answer)
        repair = Repair(model, rounds=self.spec.repair_rounds, max_tokens=self.spec.repair_max_tokens)
        await repair.repair_one(ctx, task, Candidate(start.text, start.answer, start.call.model, "generate"), verdict)
        self._sent(ctx, "repair", problem_id, model)
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
        self._costs += [Cost("repair", "pool", self.stage, a.call) for a in attempts]
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
