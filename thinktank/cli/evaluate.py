"""`thinktank eval`, `report`, `trace` and `archs`: run an architecture on a task, compare runs, read one run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
from thinktank.models.packs import DEFAULT_MODEL, PACKS, model_label

if TYPE_CHECKING:
    from thinktank.eval.store import ResultStore


def default_run_dir(task: str, models: list[str], arch: str) -> Path:
    return Path("runs") / f"{task}-{'+'.join(model_label(m) for m in models)}-{Path(arch).stem}"


def eval_command(
    task: Annotated[str, typer.Option("--task", "-t", help="humaneval, spider, gsm-symbolic, or a path to a JSONL task file.")],
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model(s) the architecture uses by default; repeat for several.")
    ] = [  # noqa: B006
        DEFAULT_MODEL
    ],
    arch: Annotated[str, typer.Option("--arch", "-a", help="Preset name or YAML file (see `thinktank archs`).")] = "single",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N problems.")] = None,
    offset: Annotated[int, typer.Option(min=0, help="Skip the first N problems.")] = 0,
    sample: Annotated[
        int | None, typer.Option(min=1, help="A seeded random subset of N problems (fixed by --seed), instead of the first N.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for generated tasks, --sample and sampling.")] = 0,
    run_dir: Annotated[
        Path | None, typer.Option(help="Where results go; re-running resumes. Default runs/<task>-<model>-<arch>.")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Problems in flight (default: backend slots).")] = None,
    max_tokens_per_query: Annotated[int | None, typer.Option(min=1, help="Token budget per problem.")] = None,
    backend: BackendOpt = None,
    backends: BackendsOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    slots: SlotsOpt = BATCH_SLOTS,
    no_cache: NoCacheOpt = False,
    cache: CacheOpt = None,
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Keep the results on a PostgreSQL server (postgresql://user@host:port/db), as the run named by the run"
            " directory's name, instead of in <run-dir>/results.sqlite; workers anywhere resume it."
            " Default: $THINKTANK_STORE_URL, if set. Needs thinktank[postgres].",
        ),
    ] = None,
    prices: PricesOpt = None,
    otlp: OtlpOpt = None,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    no_speculative: NoSpeculativeOpt = True,
    no_speculative_for: NoSpeculativeForOpt = None,
    draft: DraftOpt = None,
) -> None:
    """Evaluate an architecture on a task; resumable, with live accuracy and a results DB."""
    from thinktank.arch import load_architecture
    from thinktank.engine.budget import Budget
    from thinktank.eval.report import comparison_table
    from thinktank.eval.runner import run_eval, summarize
    from thinktank.eval.store import RunStore
    from thinktank.runtime import open_engine
    from thinktank.tasks.registry import load_problems
    from thinktank.telemetry import exporting, resolve_endpoint

    resolve_endpoint(otlp)  # a malformed URL fails before any work
    pools = load_backends(backends)
    problems = load_problems(task, seed=seed, limit=limit, offset=offset, sample=sample)
    names = served_names(model, backend, pools)
    architecture = load_architecture(arch, names)
    speculation = speculation_settings(no_speculative, no_speculative_for, draft)
    if backend is None and ray is None:  # on a cluster each worker pulls and builds on its own node
        prepare_local(list(dict.fromkeys([*model, *(m for m in architecture.models if m in PACKS)])), pools,
                      speculation=speculation)  # fmt: skip
    run_dir = run_dir or default_run_dir(task, model, arch)
    store_url = store_url or os.environ.get("THINKTANK_STORE_URL") or None
    store: ResultStore
    if store_url:
        from thinktank.eval.pg_store import PostgresRunStore

        store = PostgresRunStore(store_url, run_dir.name)
    else:
        store = RunStore(run_dir)
    config = {
        "task": task,
        "arch": architecture.name,
        "spec": architecture.spec,
        "models": names,
        "seed": seed,
        "offset": offset,
        **({"sample": sample} if sample else {}),
        "max_tokens_per_query": max_tokens_per_query,
    }
    store.bind_config(config)
    remaining = len([p for p in problems if p.id not in store.done_ids()])
    if remaining < len(problems):
        console.print(f"resuming {run_dir}: {len(problems) - remaining} of {len(problems)} problems already done")
    budget = Budget(max_tokens=max_tokens_per_query) if max_tokens_per_query else None

    async def go() -> None:
        with exporting(otlp) as telemetry:
            await run(telemetry)

    async def run(telemetry: Any) -> None:
        if ray is not None:
            await run_on_ray()
            return
        async with open_engine(
            architecture.models or names,
            backend_url=backend,
            api_key=os.environ.get(api_key_env),
            slots=slots,
            use_cache=not no_cache,
            cache_path=cache,
            prices=load_prices(prices),
            pools=pools,
            speculation=speculation,
        ) as engine:
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("acc {task.fields[acc]}"),
                TextColumn("{task.fields[tps]} tok/s"),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=err_console) as bar:
                job = bar.add_task(f"{task} · {architecture.name}", total=remaining, acc="–", tps="–")

                def tick(record: Any, progress: Any) -> None:
                    bar.update(job, advance=1, acc=f"{100 * progress.accuracy:.1f}%", tps=f"{progress.tokens_per_s:.0f}")

                await run_eval(
                    engine,
                    architecture,
                    problems,
                    store,
                    budget=budget,
                    concurrency=concurrency or max(slots, pools.slots(architecture.models or names) if pools else 0),
                    on_problem=tick,
                    telemetry=telemetry,
                )

    async def run_on_ray() -> None:
        from thinktank.cluster import WorkerJob, run_eval_on_ray

        models = architecture.models or names
        spec, env = ray_engine(models, backend, api_key_env, slots, not no_cache, cache, load_prices(prices), pools)
        job = WorkerJob(spec, architecture.spec, names, budget, env=env, otlp_endpoint=resolve_endpoint(otlp))
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("acc {task.fields[acc]}"), TimeRemainingColumn())  # fmt: skip
        with Progress(*columns, console=err_console) as bar:
            job_bar = bar.add_task(f"{task} · {architecture.name} · Ray", total=remaining, acc="–")

            def tick(record: Any, progress: Any) -> None:
                bar.update(job_bar, advance=1, acc=f"{100 * progress.accuracy:.1f}%")

            per_worker = concurrency or max(slots, pools.slots(models) if pools else 0)
            await run_eval_on_ray(job, problems, store, workers=ray_workers, concurrency=per_worker, on_problem=tick)

    try:
        with ray_cluster(ray):
            run_async(go())
    finally:
        summary = summarize(store)
        store.close()
    console.print(comparison_table([summary]))
    console.print(f"results: {store.run_dir if store_url else run_dir / 'results.sqlite'}")


ReadStoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Read the runs from this PostgreSQL server (the one `eval --store` wrote them to), each by its run"
        " directory's name. Default: $THINKTANK_STORE_URL, if set; otherwise <run-dir>/results.sqlite.",
    ),
]


def open_finished_run(run: Path, store_url: str | None) -> ResultStore:
    """The store of a run that `eval` wrote: on the shared PostgreSQL server when one is named (the run is its
    directory's name there, as `eval --store` keeps it), else the run directory's results.sqlite. A run that is not
    there is refused, so a typo never reports an empty run."""
    from thinktank.eval.store import RunStore

    store_url = store_url or os.environ.get("THINKTANK_STORE_URL") or None
    if store_url:
        from thinktank.eval.pg_store import PostgresRunStore

        shared = PostgresRunStore(store_url, run.name)
        if shared.get_meta("config") is None:
            shared.close()
            raise typer.BadParameter(f"no run named {run.name!r} in {shared.run_dir.rsplit('#', 1)[0]}")
        return shared
    if not (run / "results.sqlite").exists():
        raise typer.BadParameter(f"{run} has no results.sqlite (a run kept on PostgreSQL is read with --store URL)")
    return RunStore(run)


def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories to compare.")],
    html_path: Annotated[Path, typer.Option("--html", help="Where to write the HTML report.")] = Path("runs/report.html"),
    markdown: Annotated[bool, typer.Option("--markdown", help="Also print the table as Markdown.")] = False,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            help="A run to compare every other run with, problem by problem: paired accuracy difference with a"
            " bootstrap 95% CI and McNemar's p-value (runs on the same problems differ far less than their own CIs suggest).",
        ),
    ] = None,
    store_url: ReadStoreOpt = None,
) -> None:
    """Compare runs: a table in the terminal and an HTML page with an accuracy-vs-cost plot."""
    from thinktank.eval.report import comparison_table, markdown_table, with_baseline, write_html
    from thinktank.eval.runner import summarize

    if baseline is not None and baseline not in runs:
        runs = [baseline, *runs]
    summaries, outcomes = [], []
    for run in runs:
        store = open_finished_run(run, store_url)
        summaries.append(summarize(store))
        outcomes.append({r.problem_id: r.passed for r in store.records()})
        store.close()
    if baseline is not None:
        with_baseline(summaries, outcomes, runs.index(baseline))
    console.print(comparison_table(summaries))
    if markdown:
        print(markdown_table(summaries))
    console.print(f"HTML report: {write_html(summaries, html_path)}")


def trace(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    problem_id: Annotated[str, typer.Argument(help="The problem id, e.g. HumanEval/0.")],
    store_url: ReadStoreOpt = None,
) -> None:
    """Show one problem's call tree: nodes, calls, tokens, verdicts."""
    from rich.tree import Tree

    store = open_finished_run(run, store_url)
    record = next((r for r in store.records() if r.problem_id == problem_id), None)
    store.close()
    if record is None:
        raise typer.BadParameter(f"{problem_id} is not in {run}")

    def add(tree: Tree, node: dict[str, Any]) -> None:
        u = node["usage"]
        label = f"[bold]{node['name']}[/bold] · {u['calls']} calls · {u['prompt_tokens']}+{u['completion_tokens']} tokens"
        if node.get("error"):
            label += f" · [red]{node['error']}[/red]"
        branch = tree.add(label)
        for call in node["calls"]:
            cu = call["usage"]
            branch.add(
                f"{call['status']} {call['model']} samples {call['sample_indices']} "
                f"{cu['prompt_tokens']}+{cu['completion_tokens']} tok {call['latency_s']:.2f}s"
            )
        for child in node["children"]:
            add(branch, child)

    verdict = "[green]passed[/green]" if record.passed else f"[red]failed[/red]: {record.reason}"
    root = Tree(f"{problem_id}: {verdict} · {record.n_correct}/{record.n_candidates} candidates correct")
    add(root, record.trace)
    for i, cand in enumerate(record.candidates):
        hv = cand["hidden_verdict"]
        root.add(
            f"candidate {i} from {cand['node']} ({cand['model']}): {'pass' if hv['passed'] else 'fail'} — {hv['reason']}"
            f" scores={cand['scores']}"
        )
    console.print(root)


def archs() -> None:
    """List the preset architectures."""
    from importlib import resources

    from thinktank.arch import preset_names

    for name in preset_names():
        text = (resources.files("thinktank.presets") / f"{name}.yaml").read_text()
        first = text.splitlines()[0].lstrip("# ") if text.startswith("#") else ""
        console.print(f"[bold]{name}[/bold]: {first}")
