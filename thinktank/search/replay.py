"""Score a configuration from the pool, without calling models again: `evaluate(pool, config, problem_ids)`.

Each technique's selection rule is mirrored on pooled evidence, using the techniques' own pure functions
(`vote.tally`, `gen_tests.dual_agreement`, `adaptive.leader_confidence`): first; vote (largest behaviour group, ties
by prior then earliest); exec_vote (verify_exec filter keeping at least one, then vote with the public score as
prior); codet (the first n_tests replies' tests; none written for fewer than two distinct programs); rank pointwise
(top judge score, each distinct answer judged once);
repair (Repair.apply with top_k=1: the first candidate failing the public checks, up to `rounds` attempts, best
attempt kept, reordered by public score); cascade (escalate when public_pass / vote_share is below the threshold);
adaptive (waves over the draw order, Beta stopping or first public pass).

Draws: draw 0 is "samples 0..n-1", exactly what the exported architecture uses; for n below the pool's size,
`draws` more random subsets of size n (without replacement, seeded per problem, so every configuration sees the
same subsets) estimate the expected accuracy at that n. A configuration needing more samples than the pool holds
extends it (`SamplePool.ensure_samples`), it never reuses a sample. Missing judge scores, repair chains and test
runs are generated on demand and kept in the pool.

Reported per configuration: expected accuracy (mean over draws, then problems) with a 95% bootstrap interval over
problems (1,000 resamples, seeded); draw-0 accuracy; mean tokens (prompt + completion of every call the
configuration makes: a request for n samples pays the prompt once per backend call, ceil(n / per_call) calls as the
engine groups seeded samples); $ from a price table; latency from the recorded call latencies (a step's concurrent
calls take max(slowest, total / slots), steps add; calls the cache served are timed at the model's measured seconds
per token; LLM calls only, sandbox time excluded).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thinktank._aio import gather_all
from thinktank.kinds import kind_of
from thinktank.search.pool import Answer, Call, PoolError, SamplePool
from thinktank.search.space import Config, Stage
from thinktank.tasks.base import TaskInput
from thinktank.techniques.adaptive import leader_confidence
from thinktank.techniques.gen_tests import dual_agreement
from thinktank.techniques.verify_exec import has_public_checks
from thinktank.techniques.vote import tally
from thinktank.usage import PriceTable

__all__ = ["Evaluation", "evaluate"]


@dataclass
class Evaluation:
    config: Config
    accuracy: float  # expected over draws, mean over problems
    ci95: tuple[float, float]  # bootstrap over problems
    canonical_accuracy: float  # draw 0: what the exported architecture does
    tokens: float  # mean per query
    usd: float
    latency_s: float
    calls: float
    draws: int
    per_problem: dict[str, float] = field(default_factory=dict)  # expected accuracy per problem
    canonical: dict[str, bool] = field(default_factory=dict)  # draw 0 verdict per problem
    canonical_tokens: dict[str, int] = field(default_factory=dict)  # draw 0 tokens per problem

    def metrics(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "ci95": list(self.ci95), "canonical_accuracy": self.canonical_accuracy,
                "tokens": self.tokens, "usd": self.usd, "latency_s": self.latency_s, "calls": self.calls,
                "draws": self.draws}  # fmt: skip


class _Missing(Exception):
    """Replay needs pool data that is not there yet; `key` dedupes identical needs."""

    def __init__(self, key: tuple[Any, ...], kind: str, model: str, pid: str, payload: Any) -> None:
        self.key, self.kind, self.model, self.pid, self.payload = key, kind, model, pid, payload


class _Run:
    """One (problem, draw) replay: its task, and the cost of every call the configuration makes."""

    def __init__(self, pool: SamplePool, pid: str, prices: PriceTable | None, slots: int) -> None:
        self.pool, self.pid, self.prices, self.slots = pool, pid, prices, slots
        self.task: TaskInput = pool.problems[pid].input
        self.public = has_public_checks(self.task)
        self.tokens = self.calls = 0
        self.usd = self.latency = 0.0

    def request(self, model: str, drawn: Sequence[Call], prompt: int) -> None:
        """One request for len(drawn) samples: ceil(n / per_call) backend calls at once, each paying `prompt` tokens."""
        k = self.pool.per_call(model)
        self.parallel([(drawn[i : i + k], prompt) for i in range(0, len(drawn), k)])

    def singles(self, calls: Sequence[Call]) -> None:
        """Independent one-sample calls made concurrently (judge calls), or one call (a repair round)."""
        self.parallel([([c], c.prompt_tokens) for c in calls])

    def samples(self, model: str, pooled: Sequence[Answer], drawn: Sequence[Answer]) -> None:
        self.request(model, [a.call for a in drawn], max(a.call.prompt_tokens for a in pooled))

    def parallel(self, chunks: Sequence[tuple[Sequence[Call], int]]) -> None:
        """Backend calls (their samples, their prompt tokens) made at once; the step takes max(slowest, total / slots)."""
        latencies = []
        for chunk, prompt in chunks:
            if not chunk:
                continue
            head, completion = chunk[0], sum(c.completion_tokens for c in chunk)
            self.tokens += prompt + completion
            self.calls += 1
            if self.prices is not None:
                self.usd += self.prices.cost(head.model, prompt, completion)
            measured = len(chunk) == 1 and head.prompt_tokens and not head.cached and head.latency_s
            rate = self.pool.seconds_per_token(head.model)
            latencies.append(head.latency_s if measured and head.latency_s else rate * max(c.completion_tokens for c in chunk))
        if latencies:
            self.latency += max(max(latencies), sum(latencies) / self.slots)


def _vote(cands: list[Answer], priors: Sequence[float]) -> list[Answer]:
    return [cands[i] for i in tally([c.key for c in cands], priors).order()]


def _verify_filter(cands: list[Answer]) -> list[Answer]:
    order = sorted(range(len(cands)), key=lambda i: -cands[i].public_score)
    passing = [i for i in order if cands[i].public_passed]
    return [cands[i] for i in (passing if passing else order[:1])]


def _codet(run: _Run, stage: Stage, cands: list[Answer]) -> list[Answer]:
    task = run.task
    if not kind_of(task).takes_unit_tests(task):
        return cands
    if len({c.answer for c in cands if c.answer}) < 2:  # as GenTests: no tests written, programs first
        return sorted(cands, key=lambda c: not c.answer)
    assert stage.tests_model is not None
    tests = run.pool.tests(stage.tests_model, run.pid)
    if tests is None:
        raise _Missing(("tests", stage.tests_model, run.pid), "tests", stage.tests_model, run.pid, None)
    run.request(stage.tests_model, tests.replies[: stage.n_tests], max(c.prompt_tokens for c in tests.replies))
    count = tests.prefix[min(stage.n_tests, len(tests.replies))]
    if not count:
        return cands
    signatures = []
    for c in cands:
        results = run.pool.test_results(stage.tests_model, run.pid, c.answer) if c.answer else ()
        if results is None:
            raise _Missing(("runs", stage.tests_model, run.pid), "runs", stage.tests_model, run.pid, cands)
        signatures.append(frozenset(j for j in range(count) if results[j]))
    scores = dual_agreement(signatures)
    return [cands[i] for i in sorted(range(len(cands)), key=lambda i: -scores[i])]


def _rank(run: _Run, stage: Stage, cands: list[Answer]) -> list[Answer]:
    assert stage.judge_model is not None
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cands):
        groups.setdefault(c.distinct, []).append(i)
    members = list(groups.values())
    judged = [run.pool.judge(stage.judge_model, run.pid, cands[g[0]].show) for g in members]
    if any(j is None for j in judged):
        reps = [cands[g[0]] for g in members]
        raise _Missing(("judge", stage.judge_model, run.pid), "judge", stage.judge_model, run.pid, reps)
    scores = [j[0] for j in judged if j is not None]
    run.singles([j[1] for j in judged if j is not None])
    order = sorted(range(len(members)), key=lambda g: (scores[g] is None, -(scores[g] or 0.0), g))
    return [cands[i] for g in order for i in members[g]]


def _repair(run: _Run, stage: Stage, cands: list[Answer]) -> list[Answer]:
    chosen = next((i for i, c in enumerate(cands) if not c.public_passed), None)
    if chosen is None:
        return cands
    assert stage.repair_model is not None
    start = cands[chosen]
    chain = run.pool.chain(stage.repair_model, run.pid, start.start)
    if chain is None or chain.rounds < stage.repair_rounds:
        raise _Missing(("chain", stage.repair_model, run.pid, start.start), "chain", stage.repair_model, run.pid, start)
    best = start
    for attempt in chain.attempts[: stage.repair_rounds]:  # a chain ends at its first passing attempt, as repair_one does
        run.singles([attempt.call])
        if attempt.public_score >= best.public_score:
            best = attempt
    result = list(cands)
    result[chosen] = best
    return [result[i] for i in sorted(range(len(result)), key=lambda i: (-result[i].public_score, i != chosen))]


def _adaptive(run: _Run, stage: Stage, order: list[int]) -> list[Answer]:
    a = stage.adaptive
    assert a is not None
    samples = run.pool.samples(stage.model, stage.temperature, run.pid)
    check = a.first_pass and kind_of(run.task).public_pass_is_final(run.task)
    drawn: list[Answer] = []
    for k in range(math.ceil(a.max_n / a.wave)):
        fresh = [samples[order[s]] for s in range(k * a.wave, min((k + 1) * a.wave, a.max_n))]
        run.samples(stage.model, samples, fresh)
        drawn += fresh
        if check and any(c.public_passed for c in drawn):
            break
        groups = tally([c.key for c in drawn], [c.public_score if check else 0.0 for c in drawn]).groups
        sizes = [len(g) for g in groups[:2]] + [0, 0]
        if leader_confidence(sizes[0], sizes[1]) >= a.stop_confidence:
            break
    result = tally([c.key for c in drawn], [c.public_score if check else 0.0 for c in drawn])
    passed = {i for i, c in enumerate(drawn) if check and c.public_passed}
    return [drawn[i] for i in sorted(result.order(), key=lambda i: i not in passed)]


def _stage(run: _Run, stage: Stage, order: list[int]) -> list[Answer]:
    if stage.adaptive:
        cands = _adaptive(run, stage, order)
    else:
        samples = run.pool.samples(stage.model, stage.temperature, run.pid)
        cands = [samples[i] for i in order]
        run.samples(stage.model, samples, cands)
        if stage.selection == "vote":
            cands = _vote(cands, [0.0] * len(cands))
        elif stage.selection == "exec_vote":
            cands = _verify_filter(cands) if run.public else cands
            cands = _vote(cands, [c.public_score if run.public else 0.0 for c in cands])
        elif stage.selection == "codet":
            cands = _codet(run, stage, cands)
        elif stage.selection == "rank":
            cands = _rank(run, stage, cands)
    if stage.repair_rounds and run.public:
        cands = _repair(run, stage, cands)
    return cands


def _order(pool: SamplePool, stage: Stage, pid: str, draw: int, seed: int, tag: str) -> list[int]:
    size, held = stage.size, pool.spec.size(stage.temperature)
    if draw == 0 or size >= held:
        return list(range(size))
    rng = random.Random(f"{seed}|{pid}|{stage.model}|{stage.temperature}|{size}|{draw}|{tag}")
    return rng.sample(range(held), size)


def _replay(run: _Run, config: Config, draw: int, seed: int) -> bool:
    cands = _stage(run, config.stage, _order(run.pool, config.stage, run.pid, draw, seed, "s1"))
    if config.cascade:
        c = config.cascade
        if c.signal == "vote_share":
            value = tally([x.key for x in cands], [0.0] * len(cands)).leader_share if cands else 0.0
        else:
            value = cands[0].public_score if cands and run.public else 0.0
        if value < c.threshold:
            cands = _stage(run, c.stage, _order(run.pool, c.stage, run.pid, draw, seed, "s2"))
    return bool(cands) and cands[0].hidden_passed


def _draws(pool: SamplePool, config: Config, draws: int) -> int:
    return draws if any(s.size < pool.spec.size(s.temperature) for s in config.stages) else 0


async def _fill(pool: SamplePool, needs: Iterable[_Missing]) -> None:
    async def one(m: _Missing) -> None:
        if m.kind == "chain":
            await pool.ensure_chain(m.model, m.pid, m.payload)
        elif m.kind == "judge":
            await pool.ensure_judge(m.model, m.pid, m.payload)
        elif m.kind == "tests":
            await pool.ensure_tests(m.model, [m.pid])
        else:
            await pool.ensure_test_runs(m.model, m.pid, [c.answer for c in m.payload])

    await gather_all(one(m) for m in needs)


def bootstrap_ci(values: Sequence[float], seed: int = 0, resamples: int = 1000) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling problems."""
    if not values:
        return (0.0, 0.0)
    data = np.asarray(values, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(data), size=(resamples, len(data)))
    means = data[idx].mean(axis=1)
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


async def evaluate(
    pool: SamplePool,
    config: Config,
    problem_ids: Sequence[str],
    *,
    draws: int = 8,
    seed: int = 0,
    prices: PriceTable | None = None,
    slots: int = 4,
) -> Evaluation:
    """Replay `config` on the problems; generates only what the pool lacks (extension, judge, repair, test runs)."""
    if not problem_ids:
        raise PoolError("evaluate needs at least one problem")
    for stage in config.stages:
        await pool.ensure_samples(stage.model, stage.temperature, stage.size, problem_ids)
    n_draws = _draws(pool, config, draws)
    pending = [(pid, d) for pid in problem_ids for d in range(n_draws + 1)]
    results: dict[tuple[str, int], tuple[bool, _Run]] = {}
    for _ in range(16):
        needs: dict[tuple[Any, ...], _Missing] = {}
        left = []
        for pid, d in pending:
            run = _Run(pool, pid, prices, slots)
            try:
                results[(pid, d)] = (_replay(run, config, d, seed), run)
            except _Missing as missing:
                if missing.key in needs and missing.kind in ("judge", "runs"):  # one batch per (model, problem)
                    needs[missing.key].payload = [*needs[missing.key].payload, *missing.payload]
                else:
                    needs.setdefault(missing.key, missing)
                left.append((pid, d))
        if not left:
            break
        await _fill(pool, needs.values())
        pending = left
    else:
        raise PoolError(f"replay of {config.label()} kept needing data the pool did not produce")
    per_problem = {pid: sum(results[(pid, d)][0] for d in range(n_draws + 1)) / (n_draws + 1) for pid in problem_ids}
    count = len(results)
    runs = [run for _, run in results.values()]
    return Evaluation(
        config=config,
        accuracy=sum(per_problem.values()) / len(per_problem),
        ci95=bootstrap_ci(list(per_problem.values()), seed),
        canonical_accuracy=sum(results[(pid, 0)][0] for pid in problem_ids) / len(problem_ids),
        tokens=sum(r.tokens for r in runs) / count,
        usd=sum(r.usd for r in runs) / count,
        latency_s=sum(r.latency for r in runs) / count,
        calls=sum(r.calls for r in runs) / count,
        draws=n_draws + 1,
        per_problem=per_problem,
        canonical={pid: results[(pid, 0)][0] for pid in problem_ids},
        canonical_tokens={pid: results[(pid, 0)][1].tokens for pid in problem_ids},
    )
