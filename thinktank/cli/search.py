"""`thinktank search`: the best architecture for a task under a budget, by replaying a pool of samples."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from thinktank.cli.common import (
    console,
    err_console,
    load_backends,
    load_prices,
    prepare_local,
    ray_cluster,
    ray_engine,
    run_async,
    served_names,
    speculation_settings,
)
from thinktank.cli.options import (
    BATCH_SLOTS,
    ApiKeyEnvOpt,
    BackendOpt,
    BackendsOpt,
    CacheOpt,
    DraftOpt,
    NoCacheOpt,
    NoSpeculativeForOpt,
    NoSpeculativeOpt,
    OtlpOpt,
    PricesOpt,
    RayOpt,
    RayWorkersOpt,
    SlotsOpt,
)


class _SearchBars:
    """Rich progress bars for `thinktank search`: one per step (pool building, trials, confirmation)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task_id: Any = None

    def start(self, label: str, total: int) -> None:
        self.task_id = self.progress.add_task(label, total=total)

    def advance(self) -> None:
        if self.task_id is not None:
            self.progress.advance(self.task_id)


def search(
    task: Annotated[
        str,
        typer.Option(
            "--task",
            "-t",
            help="humaneval, gsm-symbolic, rag-synth, or a path to a JSONL task file (not SQL). A retrieval-QA task searches"
            " k, rerank, permuted orders and the model per role, each configuration evaluated fresh on the dev split.",
        ),
    ],
    models: Annotated[
        str,
        typer.Option(
            "--models",
            help="Comma-separated models; every role (generator, tests, judge, repair, cascade stages) picks from them.",
        ),
    ],
    budget_per_query: Annotated[
        str | None, typer.Option(help="Mean cost per query the chosen architecture may have: tokens (5000) or dollars ($0.002).")
    ] = None,
    dev: Annotated[int, typer.Option(min=0, help="Dev problems the search scores configurations on (at least 10).")] = 40,
    test: Annotated[int, typer.Option(min=0, help="Held-out test problems the choice is confirmed on (at least 10).")] = 40,
    trials: Annotated[int, typer.Option(min=1, help="Finished trials the study should hold (re-running resumes).")] = 200,
    run_dir: Annotated[Path | None, typer.Option(help="Pool, trial DB and reports. Default runs/search-<task>-<models>.")] = None,
    pool_n: Annotated[int, typer.Option(min=1, max=64, help="Samples per (model, temperature > 0) in the pool.")] = 8,
    repair_rounds: Annotated[
        int, typer.Option(min=0, max=10, help="Most repair rounds in the space (0: no repair; chains are generated on demand).")
    ] = 3,
    temperatures: Annotated[str, typer.Option(help="Pooled temperatures, comma-separated (0 = one greedy sample).")] = "0.0,0.8",
    greedy_models: Annotated[
        str,
        typer.Option(help="Comma-separated models (of --models) used only as greedy generators: e.g. a slow large model."),
    ] = "",
    max_n: Annotated[int, typer.Option(min=1, max=16, help="Largest n in the space; above --pool-n the pool is extended.")] = 16,
    draws: Annotated[int, typer.Option(min=0, help="Random sample subsets per configuration, besides samples 0..n-1.")] = 8,
    max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens of samples and generated tests.")] = 512,
    sampler: Annotated[str, typer.Option(help="Optuna sampler: nsga2 or tpe (seeded).")] = "nsga2",
    seed: Annotated[int, typer.Option(help="Seed of the dev/test split (= eval --sample dev+test --seed), draws, sampler.")] = 0,
    slots: SlotsOpt = BATCH_SLOTS,
    backend: BackendOpt = None,
    backends: BackendsOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    prices: PricesOpt = None,
    no_confirm: Annotated[bool, typer.Option("--no-confirm", help="Skip the confirmation run on the test split.")] = False,
    compare_runs: Annotated[
        list[Path] | None, typer.Option("--compare-runs", help="Eval run dir to compare on the test split; repeat for several.")
    ] = None,
    no_cache: NoCacheOpt = False,
    cache: CacheOpt = None,
    otlp: OtlpOpt = None,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    study_storage: Annotated[
        str | None,
        typer.Option(
            "--study-storage",
            help="Keep the Optuna study in a storage other processes share, so several machines add trials to one study:"
            " an Optuna RDB URL (postgresql://USER@HOST:PORT/DB, sqlite:///PATH, mysql+pymysql://...) or a journal file"
            " PATH. Every process must run the same search settings. Default: <run-dir>/study.db.",
        ),
    ] = None,
    study_name: Annotated[
        str, typer.Option("--study-name", help="The study's name in --study-storage (processes sharing one use the same).")
    ] = "search",
    no_speculative: NoSpeculativeOpt = True,
    no_speculative_for: NoSpeculativeForOpt = None,
    draft: DraftOpt = None,
) -> None:
    """Search the best architecture for a task under a budget, by replaying a pool of samples; confirm it on held-out problems.

    With --ray the pool is generated on a Ray cluster's workers (the driver writes it); with --study-storage several
    processes, on any machines, run trials of one study (docs/scaling.md)."""
    from thinktank.exceptions import ConfigError
    from thinktank.runtime import open_engine
    from thinktank.search.pool import PoolSpec
    from thinktank.search.rag_space import run_rag_search
    from thinktank.search.report import front_table, summary_lines
    from thinktank.search.study import MIN_TEST, QueryBudget, SearchSettings, run_search, split_problems
    from thinktank.tasks.registry import load_problems
    from thinktank.telemetry import exporting, resolve_endpoint

    resolve_endpoint(otlp)  # a malformed URL fails before any work
    refs = [m.strip() for m in models.split(",") if m.strip()]
    if not refs:
        raise ConfigError("--models needs at least one model")
    if sampler not in ("nsga2", "tpe"):
        raise ConfigError(f"--sampler must be nsga2 or tpe, got {sampler!r}")
    try:
        temps = tuple(dict.fromkeys(float(t) for t in temperatures.split(",") if t.strip()))
    except ValueError as exc:
        raise ConfigError(f"--temperatures {temperatures!r}: comma-separated numbers expected") from exc
    budget = QueryBudget.parse(budget_per_query) if budget_per_query else None
    dev_problems, test_problems = split_problems(  # as `eval --sample dev+test --seed` loads them
        load_problems(task, seed=seed), dev, test, seed, min_test=0 if no_confirm else MIN_TEST
    )
    pools = load_backends(backends)
    names = served_names(refs, backend, pools)
    speculation = speculation_settings(no_speculative, no_speculative_for, draft)
    if backend is None:
        prepare_local(refs, pools, speculation=speculation)  # unknown models and missing packs fail here, before any work
    greedy = served_names((m for m in greedy_models.split(",") if m.strip()), backend, pools)
    if unknown := [m for m in greedy if m not in names]:
        raise ConfigError(f"--greedy-models {', '.join(unknown)} not in --models")
    spec = PoolSpec(
        models=tuple(names),
        temperatures=temps,
        n=pool_n,
        max_tokens=max_tokens,
        greedy_models=tuple(greedy),
        repair_rounds=repair_rounds,
    )
    settings = SearchSettings(trials=trials, draws=draws, seed=seed, sampler=sampler, budget=budget, slots=slots, max_n=max_n,
                              study_storage=study_storage, study_name=study_name)  # fmt: skip
    if study_storage is not None:
        from thinktank.search.storage import open_storage

        open_storage(study_storage)  # a malformed or unreachable storage fails before any work
    rag = dev_problems[0].input.kind == "qa"  # retrieval QA: not replayable from a pool (search/rag_space.py)
    if ray is not None and rag:
        raise ConfigError("--ray spreads the sample pool's generation; a retrieval-QA search has no pool (run it without --ray)")
    run_dir = run_dir or Path("runs") / f"search-{Path(task).stem}-{'+'.join(names)}"
    price_table = pools.prices(load_prices(prices)) if pools else load_prices(prices)

    fill_pool = None
    if ray is not None:
        from thinktank.cluster import PoolJob, build_pool_on_ray

        engine_spec, env = ray_engine(refs, backend, api_key_env, slots, not no_cache, cache, load_prices(prices), pools)
        job = PoolJob(engine_spec, spec, env, otlp_endpoint=resolve_endpoint(otlp))
        per_worker = max(slots, pools.slots(names) if pools else 0)

        async def fill_pool(pool: Any, progress: Any) -> None:
            await build_pool_on_ray(job, pool, workers=ray_workers, concurrency=per_worker, progress=progress)

    async def go() -> Any:
        with exporting(otlp) as telemetry:
            return await run(telemetry)

    async def run(telemetry: Any) -> Any:
        async with open_engine(refs, backend_url=backend, api_key=os.environ.get(api_key_env), slots=slots,
                               use_cache=not no_cache, cache_path=cache, prices=price_table, pools=pools,
                               speculation=speculation) as engine:  # fmt: skip
            columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TimeRemainingColumn())  # fmt: skip
            with Progress(*columns, console=err_console) as bars:
                if rag:
                    return await run_rag_search(engine, task=task, dev=dev_problems, test=test_problems, models=names,
                                                run_dir=run_dir, settings=settings, confirm_on_test=not no_confirm,
                                                compare=compare_runs or [], progress=_SearchBars(bars),
                                                telemetry=telemetry)  # fmt: skip
                return await run_search(engine, task=task, dev=dev_problems, test=test_problems, models=names, run_dir=run_dir,
                                        spec=spec, settings=settings, prices=price_table, confirm_on_test=not no_confirm,
                                        compare=compare_runs or [], progress=_SearchBars(bars),
                                        telemetry=telemetry, fill_pool=fill_pool)  # fmt: skip

    with ray_cluster(ray):
        outcome = run_async(go())
    console.print(front_table(outcome))
    for line in summary_lines(outcome):
        console.print(line, markup=False, highlight=False)
    for name in ("chosen.yaml", "pareto.json", "report.html"):
        console.print(f"{name}: {run_dir / name}")
