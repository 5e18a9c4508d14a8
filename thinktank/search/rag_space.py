"""The retrieval-QA knobs of the search: k, number of permuted orders, rerank on/off, and the model per role.

    config = suggest_rag(trial, ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"])
    Path("chosen.yaml").write_text(config.to_yaml())     # retrieve -> [rerank] -> read | permute

A `RagConfig` exports to an architecture of shipped techniques only: `retrieve` (k, or 2k when a reranker keeps k),
optionally `rerank` (multi-criteria, its own model), then `read` (one order) or `permute` (m orders, its own vote).

What the sample pool can replay (`RAG_KNOBS`): none of these yet. The pool holds independent samples of the task's
prompt, without passages, so it says nothing about an answer read from k passages in some order; k and rerank
change which passages are read, so they need fresh calls in any case. The number of orders would be replayable
from a pool of per-order answers (`permute.order_at` is prefix-stable, so the first m orders of a larger m are the
orders m would draw, as `adaptive`'s samples are) — not built. So a configuration here is evaluated fresh, with a
real `eval` on the dev problems (`evaluate_rag`), where the response cache makes equal calls free.

`run_rag_search` is `thinktank search` for a retrieval-QA task: the same Optuna study (resumable in run_dir/study.db),
Pareto front, budget constraint, chosen.yaml, confirmation on the test split and report as the replayed search, with
each distinct configuration evaluated once by such an eval. Its tokens per query count cache-served calls too, so a
configuration's cost does not depend on which trial ran first.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel

from thinktank.arch import build_architecture
from thinktank.engine.engine import Engine
from thinktank.eval.runner import run_eval, summarize
from thinktank.eval.store import RunStore
from thinktank.search.outcome import SearchOutcome, pareto_front
from thinktank.search.report import write_report
from thinktank.tasks.base import Problem
from thinktank.telemetry import TraceSink

if TYPE_CHECKING:
    import optuna

    from thinktank.search.pool import PoolProgress
    from thinktank.search.study import SearchSettings

__all__ = ["K_CHOICES", "ORDER_CHOICES", "RAG_KNOBS", "RagConfig", "evaluate_rag", "run_rag_search", "suggest_rag"]

K_CHOICES = (3, 5, 10)
ORDER_CHOICES = (1, 3, 6)

#: knob -> how the search scores it (what the report states)
RAG_KNOBS: dict[str, str] = {
    "k": "evaluated fresh (changes the passages read; not in the sample pool)",
    "orders": "evaluated fresh (replayable from a pool of per-order answers, which is not built yet)",
    "rerank": "evaluated fresh (changes the passages read)",
    "reader model": "evaluated fresh (the pool's samples are closed-book)",
    "rerank model": "evaluated fresh",
}


class RagConfig(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}

    reader: str
    k: int = 5
    orders: int = 1
    rerank_model: str | None = None  # None: no reranking
    max_tokens: int = 256

    def key(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def short_id(self) -> str:
        return hashlib.sha1(self.key().encode()).hexdigest()[:8]

    def label(self) -> str:
        rerank = f" rerank({self.rerank_model})" if self.rerank_model else ""
        reader = f"permute{self.orders}" if self.orders > 1 else "read"
        return f"top{self.k}{rerank} {reader}({self.reader})"

    def to_spec(self, name: str | None = None) -> dict[str, Any]:
        layers: list[dict[str, Any]] = [{"retrieve": {"k": 2 * self.k if self.rerank_model else self.k}}]
        if self.rerank_model:
            layers.append({"rerank": {"model": self.rerank_model, "criteria": "multi", "keep": self.k}})
        if self.orders > 1:
            layers.append({"permute": {"models": [self.reader], "m": self.orders, "max_tokens": self.max_tokens}})
        else:
            layers.append({"read": {"models": [self.reader], "max_tokens": self.max_tokens}})
        return {"name": name or f"search-rag-{self.short_id()}", "layers": layers}

    def to_yaml(self, name: str | None = None) -> str:
        header = f"# {self.label()}\n# found by `thinktank search`; run it with `thinktank eval --arch <this file>`\n"
        return header + yaml.safe_dump(self.to_spec(name), sort_keys=False, default_flow_style=None, width=120)


def suggest_rag(trial: optuna.Trial, models: list[str]) -> RagConfig:
    """One configuration, define-by-run (the rerank model is only suggested when reranking is on)."""
    reader = trial.suggest_categorical("rag_reader", list(models))
    k = trial.suggest_categorical("rag_k", list(K_CHOICES))
    orders = trial.suggest_categorical("rag_orders", list(ORDER_CHOICES))
    rerank = trial.suggest_categorical("rag_rerank", [False, True])
    rerank_model = trial.suggest_categorical("rag_rerank_model", list(models)) if rerank else None
    return RagConfig(reader=reader, k=min(k, 10), orders=orders, rerank_model=rerank_model)


NOTES = (
    "Each configuration is evaluated by a real eval on the dev problems (retrieval-QA knobs are not replayable from a"
    " sample pool: they change the passages read). Accuracy is exact match on the hidden answers with a Wilson 95%"
    " interval; tokens per query are prompt + completion of every call, counted whether or not the response cache"
    " served them; latency is the median per-problem wall time of that eval. Test accuracy comes from a fresh run."
)


async def evaluate_rag(
    engine: Engine,
    config: RagConfig,
    problems: list[Problem],
    run_dir: Path,
    *,
    concurrency: int = 4,
    telemetry: TraceSink | None = None,
) -> dict[str, Any]:
    """A fresh, resumable eval of one configuration on `problems` (`run_dir/<short id>/`): `summarize`'s metrics."""
    arch = build_architecture(config.to_spec(), [config.reader])
    store = RunStore(run_dir / config.short_id())
    try:
        store.bind_config({"rag_config": config.model_dump(mode="json"), "problems": [p.id for p in problems]})
        await run_eval(engine, arch, problems, store, concurrency=concurrency, telemetry=telemetry)
        return summarize(store)
    finally:
        store.close()


def trial_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """An eval summary as the study's per-trial metrics (the names the replayed search uses)."""
    return {
        "accuracy": summary["accuracy"],
        "ci95": list(summary["ci95"]),
        "canonical_accuracy": summary["accuracy"],  # no draws: the eval ran exactly what the YAML does
        "tokens": summary["tokens_with_cache_per_problem"],
        "spent_tokens": summary["tokens_per_problem"] * summary["problems"],
        "usd": summary["usd_per_problem"],
        "latency_s": summary["p50_latency_s"],
        "calls": summary["calls_per_problem"],
        "draws": 0,
    }


def baseline_configs(models: list[str]) -> list[RagConfig]:
    """Evaluated first: `rag-single` with each model, then `rag-moi`'s shape with the first."""
    return [RagConfig(reader=m, k=5) for m in models] + [RagConfig(reader=models[0], k=5, orders=3)]


def _params(config: RagConfig) -> dict[str, Any]:
    params: dict[str, Any] = {"rag_reader": config.reader, "rag_k": config.k, "rag_orders": config.orders,
                              "rag_rerank": config.rerank_model is not None}  # fmt: skip
    if config.rerank_model is not None:
        params["rag_rerank_model"] = config.rerank_model
    return params


async def run_rag_search(
    engine: Engine,
    *,
    task: str,
    dev: list[Problem],
    test: list[Problem],
    models: list[str],
    run_dir: Path,
    settings: SearchSettings,
    confirm_on_test: bool = True,
    compare: list[Path] | None = None,
    progress: PoolProgress | None = None,
    telemetry: TraceSink | None = None,
) -> SearchOutcome:
    """`thinktank search` over the RAG knobs (module docstring); writes run_dir/{study.db, trials/, chosen.yaml,
    pareto.json, report.html}."""
    from thinktank.search.study import bind_identity, choose, compare_runs, confirm, fill_study, open_study, trial_results

    for model in models:
        engine.backend_for(model)  # UnknownModelError before any work
    started = time.monotonic()
    study = open_study(run_dir, settings)
    bind_identity(study, {"space": "rag", "models": models, "dev": sorted(p.id for p in dev), "seed": settings.seed,
                          "sampler": settings.sampler})  # fmt: skip

    async def metrics_of(config: RagConfig) -> dict[str, Any]:
        summary = await evaluate_rag(engine, config, dev, run_dir / "trials", concurrency=settings.slots, telemetry=telemetry)
        return trial_metrics(summary)

    await fill_study(study, settings, lambda trial: suggest_rag(trial, models), metrics_of,
                     baselines=[_params(c) for c in baseline_configs(models)], space=RagConfig, progress=progress,
                     label="trials, each a fresh eval")  # fmt: skip
    results = trial_results(study, settings.budget, RagConfig)
    chosen = choose(results, settings.budget)
    distinct_metrics = {r.config.key(): r.metrics for r in results}.values()
    costs = {"fresh": {"configurations": len(distinct_metrics), "tokens": sum(m["tokens"] * len(dev) for m in distinct_metrics),
                       "spent_tokens": sum(m["spent_tokens"] for m in distinct_metrics)}}  # fmt: skip
    yaml_path = run_dir / "chosen.yaml"
    yaml_path.write_text(chosen.config.to_yaml(f"search-rag-{chosen.config.short_id()}"))
    outcome = SearchOutcome(run_dir, results, pareto_front(results), chosen, costs)
    if confirm_on_test and test:
        outcome.confirmation = await confirm(engine, chosen.config, yaml_path, test, run_dir, task=task, models=models,
                                             seed=settings.seed, slots=settings.slots, progress=progress,
                                             telemetry=telemetry)  # fmt: skip
    outcome.comparisons = compare_runs(compare or [], {p.id for p in test})
    outcome.report = {"task": task, "models": models, "dev": [p.id for p in dev], "test": [p.id for p in test],
                      "settings": settings.model_dump(mode="json"), "space": "rag", "notes": NOTES,
                      "not_replayable": "; ".join(f"{k}: {v}" for k, v in RAG_KNOBS.items()),
                      "wall_s": time.monotonic() - started}  # fmt: skip
    write_report(outcome)
    return outcome
