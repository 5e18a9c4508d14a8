"""The search: build the pool, run a multi-objective Optuna study by replay, pick from the Pareto front, confirm on test.

    outcome = await run_search(engine, task="humaneval", dev=dev, test=test, models=["a", "b"],
                               run_dir=Path("runs/search"), spec=PoolSpec(models=("a", "b")), settings=SearchSettings())

The study (storage `run_dir/study.db`, `load_if_exists`) maximises dev accuracy and minimises tokens per query; latency
and $ are trial attributes. It runs Optuna's ask/tell loop with a seeded NSGA-II (or TPE) sampler; equal
configurations are evaluated once (memo, rebuilt from the DB on resume), and a trial interrupted mid-evaluation is
marked failed on resume while every finished one is kept. A per-query budget (tokens or $) is a constraint: a
configuration over it is infeasible and never chosen. The Pareto front is the non-dominated feasible set; the chosen
architecture is the front's most accurate (ties: fewer tokens). It is then run for real on the held-out test split.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
import zlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from thinktank.arch import load_architecture
from thinktank.engine.engine import Engine
from thinktank.eval.runner import run_eval, summarize
from thinktank.eval.store import RunStore
from thinktank.exceptions import ConfigError
from thinktank.search.outcome import Configuration, SearchOutcome, TrialResult, distinct, pareto_front
from thinktank.search.pool import PoolProgress, PoolSpec, SamplePool
from thinktank.search.replay import evaluate
from thinktank.search.report import write_report
from thinktank.search.space import NOT_REPLAYABLE, Config, PoolLimits, baseline_params, suggest
from thinktank.search.storage import open_storage
from thinktank.tasks.base import Problem, seeded_shuffle
from thinktank.telemetry import TraceSink
from thinktank.usage import PriceTable

try:
    import optuna
except ImportError as exc:  # the `search` extra
    raise ImportError("thinktank search needs Optuna: pip install 'thinktank[search]'") from exc

__all__ = [
    "MIN_DEV",
    "MIN_TEST",
    "QueryBudget",
    "SearchOutcome",
    "SearchSettings",
    "TrialResult",
    "adaptive_vs_fixed",
    "bind_identity",
    "choose",
    "compare_runs",
    "confirm",
    "fill_study",
    "open_study",
    "pareto_front",
    "run_search",
    "run_study",
    "split_problems",
    "trial_results",
]

MIN_DEV = 10  # fewer dev problems cannot tell configurations apart (one problem = 10 points)
MIN_TEST = 10


class QueryBudget(BaseModel):
    """Mean cost per query a chosen architecture may have: `5000` (tokens) or `$0.002`."""

    model_config = {"frozen": True}

    kind: Literal["tokens", "usd"]
    limit: float = Field(gt=0)

    @classmethod
    def parse(cls, text: str) -> QueryBudget:
        raw = text.strip()
        try:  # pydantic's ValidationError is a ValueError too: a non-positive limit lands here
            if raw.startswith("$"):
                return cls(kind="usd", limit=float(raw[1:]))
            return cls(kind="tokens", limit=float(raw.removesuffix("tokens").strip()))
        except ValueError as exc:
            raise ConfigError(f"budget per query {text!r}: give tokens (5000) or dollars ($0.002), a positive number") from exc

    def cost(self, metrics: dict[str, Any]) -> float:
        return float(metrics["tokens"] if self.kind == "tokens" else metrics["usd"])

    def describe(self, value: float | None = None) -> str:
        value = self.limit if value is None else value
        return f"{value:,.0f} tokens" if self.kind == "tokens" else f"${value:.6f}"


class SearchSettings(BaseModel):
    trials: int = Field(200, ge=1)  # finished trials the study should hold (a resumed study runs only the rest)
    draws: int = Field(8, ge=0)  # random subsets per configuration on top of draw 0
    seed: int = 0
    sampler: Literal["nsga2", "tpe"] = "nsga2"
    budget: QueryBudget | None = None
    slots: int = Field(4, ge=1)  # backend slots: latency model, confirmation concurrency
    max_n: int = Field(16, ge=1)  # largest n / adaptive max_n in the space (above the pool's n: extension)
    # an Optuna storage several processes share (storage.py; None: run_dir/study.db); kept out of reports (a password)
    study_storage: str | None = Field(None, exclude=True)
    study_name: str = Field("search", min_length=1)


def split_problems(
    problems: Sequence[Problem], dev: int, test: int, seed: int, *, min_dev: int = MIN_DEV, min_test: int = MIN_TEST
) -> tuple[list[Problem], list[Problem]]:
    """dev = the first `dev` of `seeded_shuffle(problems, seed)`, test = the next `test` (= `eval --sample dev+test`)."""
    if dev < min_dev:
        raise ConfigError(f"the dev split needs at least {min_dev} problems to compare configurations (got --dev {dev})")
    if 0 < test < min_test or (test == 0 and min_test > 0):
        raise ConfigError(f"the test split needs at least {min_test} problems to confirm the choice (got --test {test})")
    if dev + test > len(problems):
        raise ConfigError(
            f"the task has {len(problems)} problems; --dev {dev} --test {test} needs {dev + test}"
            f" (at least {min_dev} + {min_test})"
        )
    order = seeded_shuffle(list(problems), seed)
    return order[:dev], order[dev : dev + test]


def open_study(run_dir: Path | None, settings: SearchSettings) -> optuna.Study:
    """The study `settings.study_name` in `settings.study_storage` (shared with other processes), else in
    `run_dir/study.db` (WAL, so a trial costs milliseconds), or in memory without a run dir.

    In a shared study each process seeds its sampler with the settings' seed plus its own offset, so two processes do
    not propose the same configurations in the same order (trials from several processes are not reproducible anyway:
    which process tells first decides the sampler's next proposal)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage: optuna.storages.BaseStorage | None = None
    seed = settings.seed
    if settings.study_storage is not None:
        storage = open_storage(settings.study_storage)
        seed += zlib.crc32(_owner().encode())
    elif run_dir is not None:
        import sqlite3

        from sqlalchemy import event

        path = run_dir / "study.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")  # persistent: every later connection uses the WAL
        conn.close()
        rdb = optuna.storages.RDBStorage(f"sqlite:///{path}")
        event.listen(rdb.engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=NORMAL"))
        rdb.engine.dispose()
        storage = rdb
    sampler: optuna.samplers.BaseSampler = (
        optuna.samplers.NSGAIISampler(seed=seed)
        if settings.sampler == "nsga2"
        else optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    )
    return optuna.create_study(
        study_name=settings.study_name, storage=storage, sampler=sampler, directions=["maximize", "minimize"], load_if_exists=True
    )


def bind_identity(study: optuna.Study, identity: dict[str, Any]) -> None:
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", identity)
    elif stored != identity:
        changed = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
        raise ConfigError(
            f"the trial DB holds a search with different settings ({', '.join(changed)} differ); use another --run-dir"
        )


def trial_results(study: optuna.Study, budget: QueryBudget | None, space: type[BaseModel] = Config) -> list[TrialResult]:
    """The study's finished trials, each configuration read back as `space` (the replay space's `Config` by default)."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        metrics = t.user_attrs["metrics"]
        feasible = budget is None or budget.cost(metrics) <= budget.limit
        config: Configuration = space.model_validate(t.user_attrs["config"])  # type: ignore[assignment]
        out.append(TrialResult(t.number, config, metrics, feasible))
    return out


def _owner() -> str:
    """This process, as `host:pid:start` (the start time tells a reused pid from the process that was)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_started(os.getpid())}"


def _started(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[19]  # field 22: start time in clock ticks since boot
    except (OSError, IndexError):
        return "?"


def _abandoned(owner: Any) -> bool:
    """Whether a RUNNING trial's process is gone: one without an owner (an older study) or one of this host's whose
    process no longer runs. Another host's trial is left alone: its process may be running it."""
    if not isinstance(owner, str) or owner.count(":") < 2:
        return True
    host, pid, start = owner.rsplit(":", 2)
    if host != socket.gethostname():
        return False
    return not pid.isdigit() or _started(int(pid)) != start


async def fill_study(
    study: optuna.Study,
    settings: SearchSettings,
    suggest_config: Callable[[optuna.Trial], Any],
    metrics_of: Callable[[Any], Awaitable[dict[str, Any]]],
    *,
    baselines: Sequence[dict[str, Any]],
    space: type[BaseModel],
    progress: PoolProgress | None = None,
    label: str = "trials",
) -> None:
    """Ask/tell until the study holds `settings.trials` finished trials; each distinct configuration is evaluated once.

    A fresh study starts with `baselines` (trial params); a trial left running by a killed search is marked failed and
    redone as a new one, every finished one is kept. Each trial names the process that runs it (`owner`: host, pid,
    start time): in a study shared with other processes (`settings.study_storage`) only this host's trials whose
    process is gone are stale, the finished count and the memo are read from the storage before each trial, so the
    processes together stop at `settings.trials` (one more per other process at most) and rarely evaluate a
    configuration twice. The budget (when set) is each trial's constraint."""
    shared = settings.study_storage is not None
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if _abandoned(stale.user_attrs.get("owner")):  # interrupted mid-evaluation: redone as a new trial
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
    if not study.trials:
        for params in baselines:
            study.enqueue_trial(params)
    memo: dict[str, dict[str, Any]] = {r.config.key(): r.metrics for r in trial_results(study, None, space)}
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    budget = settings.budget
    if progress:
        progress.start(f"{label} ({done} done, {len(memo)} distinct)", max(0, settings.trials - done))
    owner = _owner()
    while done < settings.trials:
        trial = study.ask()
        trial.set_user_attr("owner", owner)
        try:
            config = suggest_config(trial)
            key = config.key()
            if key not in memo and shared:  # another process may have evaluated it meanwhile
                memo.update({r.config.key(): r.metrics for r in trial_results(study, None, space)})
            if key not in memo:
                memo[key] = await metrics_of(config)
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        metrics = memo[key]
        trial.set_user_attr("config", config.model_dump(mode="json"))
        trial.set_user_attr("metrics", metrics)
        if budget is not None:
            trial.set_constraint("budget", budget.cost(metrics) - budget.limit)
        study.tell(trial, [metrics["accuracy"], metrics["tokens"]])
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) if shared else done + 1
        if progress:
            progress.advance()


async def run_study(
    pool: SamplePool,
    models: list[str],
    dev_ids: list[str],
    settings: SearchSettings,
    *,
    run_dir: Path | None = None,
    prices: PriceTable | None = None,
    progress: PoolProgress | None = None,
) -> list[TrialResult]:
    """Run (or resume) the study until it holds `settings.trials` finished trials; returns them all."""
    study = open_study(run_dir, settings)
    limits = PoolLimits.of(pool.spec, next(iter(pool.problems.values())).kind, settings.max_n)
    bind_identity(study, {"models": models, "dev": sorted(dev_ids), "draws": settings.draws, "seed": settings.seed,
                  "sampler": settings.sampler, "max_n": settings.max_n, "pool": pool.spec.model_dump(mode="json")})  # fmt: skip

    async def metrics_of(config: Config) -> dict[str, Any]:
        evaluation = await evaluate(pool, config, dev_ids, draws=settings.draws, seed=settings.seed, prices=prices,
                                    slots=settings.slots)  # fmt: skip
        return evaluation.metrics()

    await fill_study(study, settings, lambda trial: suggest(trial, models, limits), metrics_of,
                     baselines=baseline_params(models, limits), space=Config, progress=progress)  # fmt: skip
    return trial_results(study, settings.budget)


def choose(results: Sequence[TrialResult], budget: QueryBudget | None) -> TrialResult:
    """The front's most accurate configuration (ties: fewer tokens); a clear error when nothing fits the budget."""
    front = pareto_front(results)
    if not front:
        if not results:
            raise ConfigError("the search finished no trial")
        assert budget is not None
        evaluated = distinct(results)
        cheapest = min(evaluated, key=lambda r: budget.cost(r.metrics))
        raise ConfigError(
            f"no configuration fits the budget of {budget.describe()} per query: the cheapest of the {len(evaluated)}"
            f" evaluated, {cheapest.config.label()}, needs {budget.describe(budget.cost(cheapest.metrics))}"
        )
    return max(front, key=lambda r: (r.accuracy, -r.tokens))


def adaptive_vs_fixed(results: Sequence[TrialResult]) -> dict[str, Any] | None:
    """Difficulty-adaptive compute vs fixed n: the best adaptive configuration and the cheapest fixed-n one at its accuracy."""
    replayed = [(r, r.config) for r in distinct(results) if r.feasible and isinstance(r.config, Config)]  # not RAG's
    configs = [(r, c) for r, c in replayed if not c.cascade]
    adaptive = [r for r, c in configs if c.adaptive]
    fixed = [r for r, c in configs if not c.adaptive and c.stage.n > 1]
    if not adaptive or not fixed:
        return None
    best = max(adaptive, key=lambda r: (r.accuracy, -r.tokens))
    close = [r for r in fixed if r.accuracy >= best.accuracy - 0.005]
    rival = min(close, key=lambda r: r.tokens) if close else max(fixed, key=lambda r: (r.accuracy, -r.tokens))

    def row(r: TrialResult) -> dict[str, Any]:
        per_1k = r.accuracy / (r.tokens / 1000) if r.tokens else 0.0
        return {"id": r.config.short_id(), "label": r.config.label(), "accuracy": r.accuracy, "tokens": r.tokens,
                "calls": r.metrics["calls"], "accuracy_per_1k_tokens": per_1k}  # fmt: skip

    return {"adaptive": row(best), "fixed": row(rival), "token_ratio": best.tokens / rival.tokens if rival.tokens else 0.0,
            "matched": bool(close)}  # fmt: skip


def _nominal_tokens(store: RunStore, ids: set[str]) -> tuple[int, float, float, int]:
    """(problems, accuracy, tokens per problem counting cache-served calls, cache hits) over `ids`."""
    records = [r for r in store.records() if r.problem_id in ids]
    if not records:
        return 0, 0.0, 0.0, 0
    tokens = sum(r.tokens + int(r.trace.get("usage", {}).get("saved_tokens", 0)) for r in records)
    return len(records), sum(r.passed for r in records) / len(records), tokens / len(records), sum(r.cache_hits for r in records)


async def confirm(
    engine: Engine, chosen: Configuration, yaml_path: Path, test: list[Problem], run_dir: Path, *, task: str, models: list[str],
    seed: int, slots: int, progress: PoolProgress | None = None, telemetry: TraceSink | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run the chosen architecture for real on the test split (a fresh eval run; it may reuse the response cache)."""
    arch = load_architecture(str(yaml_path), models)
    store = RunStore(run_dir / f"confirm-{chosen.short_id()}")
    store.bind_config({"task": task, "arch": arch.name, "spec": arch.spec, "models": models, "seed": seed,
                       "split": "test", "problems": sorted(p.id for p in test)})  # fmt: skip
    if progress:
        progress.start(f"confirming {arch.name} on {len(test)} test problems", len(test) - len(store.done_ids()))
    try:
        await run_eval(
            engine,
            arch,
            test,
            store,
            concurrency=slots,
            on_problem=(lambda *_: progress.advance()) if progress else None,
            telemetry=telemetry,
        )
        summary = summarize(store)
        n, accuracy, tokens, hits = _nominal_tokens(store, {p.id for p in test})
    finally:
        store.close()
    return {"run": str(store.run_dir), "problems": n, "accuracy": accuracy, "ci95": list(summary["ci95"]),
            "tokens": tokens, "spent_tokens": summary["tokens_per_problem"], "cache_hits": hits,
            "p50_latency_s": summary["p50_latency_s"]}  # fmt: skip


def compare_runs(runs: Sequence[Path], test_ids: set[str]) -> list[dict[str, Any]]:
    """Other eval runs (e.g. presets on a superset), restricted to the test split's problems."""
    out = []
    for run in runs:
        if not (Path(run) / "results.sqlite").exists():
            raise ConfigError(f"--compare-runs {run}: no results.sqlite there (an eval run directory is expected)")
        store = RunStore(run)
        try:
            n, accuracy, tokens, _ = _nominal_tokens(store, test_ids)
            arch = (store.get_meta("config") or {}).get("arch") or Path(run).name
        finally:
            store.close()
        out.append({"run": str(run), "arch": arch, "problems": n, "of": len(test_ids), "accuracy": accuracy, "tokens": tokens})
    return out


async def run_search(
    engine: Engine,
    *,
    task: str,
    dev: list[Problem],
    test: list[Problem],
    models: list[str],
    run_dir: Path,
    spec: PoolSpec,
    settings: SearchSettings,
    prices: PriceTable | None = None,
    confirm_on_test: bool = True,
    compare: Sequence[Path] = (),
    progress: PoolProgress | None = None,
    telemetry: TraceSink | None = None,
    fill_pool: Callable[[SamplePool, PoolProgress | None], Awaitable[Any]] | None = None,
) -> SearchOutcome:
    """The whole search; writes run_dir/{pool.sqlite, study.db, pareto.json, chosen.yaml, report.html}.

    With `telemetry`, the trace of every query that runs is exported: each pool fill and each confirmation problem
    (replayed trials make no call, so they have none). `fill_pool` fills the pool elsewhere first (`search --ray`:
    `cluster.build_pool_on_ray`); the local build then finishes whatever it left (nothing, when it filled all)."""
    for model in models:
        engine.backend_for(model)  # UnknownModelError before any work
    if settings.budget is not None and settings.budget.kind == "usd" and not (prices and prices.prices):
        raise ConfigError("a $ budget per query needs a price table (--prices)")
    started = time.monotonic()
    pool = SamplePool(run_dir / "pool.sqlite", dev, spec, engine=engine, concurrency=2 * settings.slots, telemetry=telemetry)
    try:
        if fill_pool is not None:
            await fill_pool(pool, progress)
        await pool.build(progress=progress)
        pool.stage = "search"
        dev_ids = [p.id for p in dev]
        results = await run_study(pool, models, dev_ids, settings, run_dir=run_dir, prices=prices, progress=progress)
        chosen = choose(results, settings.budget)
        costs = pool.cost_summary()
    finally:
        pool.close()
    yaml_path = run_dir / "chosen.yaml"
    yaml_path.write_text(chosen.config.to_yaml(f"search-{chosen.config.short_id()}"))
    outcome = SearchOutcome(run_dir, results, pareto_front(results), chosen, costs, adaptive=adaptive_vs_fixed(results))
    if confirm_on_test and test:
        outcome.confirmation = await confirm(engine, chosen.config, yaml_path, test, run_dir, task=task, models=models,
                                             seed=settings.seed, slots=settings.slots, progress=progress,
                                             telemetry=telemetry)  # fmt: skip
    outcome.comparisons = compare_runs(compare, {p.id for p in test})
    outcome.report = {"task": task, "models": models, "dev": [p.id for p in dev], "test": [p.id for p in test],
                      "settings": settings.model_dump(mode="json"), "pool_spec": spec.model_dump(mode="json"),
                      "not_replayable": NOT_REPLAYABLE, "wall_s": time.monotonic() - started}  # fmt: skip
    write_report(outcome)
    return outcome
