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
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel

from thinktank.arch import build_architecture
from thinktank.engine.engine import Engine
from thinktank.eval.runner import run_eval, summarize
from thinktank.eval.store import RunStore
from thinktank.tasks.base import Problem

if TYPE_CHECKING:
    import optuna

__all__ = ["K_CHOICES", "ORDER_CHOICES", "RAG_KNOBS", "RagConfig", "evaluate_rag", "suggest_rag"]

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


async def evaluate_rag(
    engine: Engine, config: RagConfig, problems: list[Problem], run_dir: Path, *, concurrency: int = 4
) -> dict[str, Any]:
    """A fresh, resumable eval of one configuration on `problems` (`run_dir/<short id>/`): `summarize`'s metrics."""
    arch = build_architecture(config.to_spec(), [config.reader])
    store = RunStore(run_dir / config.short_id())
    try:
        store.bind_config({"rag_config": config.model_dump(mode="json"), "problems": [p.id for p in problems]})
        await run_eval(engine, arch, problems, store, concurrency=concurrency)
        return summarize(store)
    finally:
        store.close()
