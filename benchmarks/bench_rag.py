"""Retrieval QA presets on the synthetic benchmark: EM/F1 with CIs, tokens, wall time, recall@k, position bias.

    .venv/bin/python benchmarks/bench_rag.py --model qwen2.5-coder-0.5b-instruct --n 100 --out runs/bench-rag
    .venv/bin/python benchmarks/bench_rag.py --limit 3 --scripted            # plumbing check, no server

Runs closed-book (`single`), `rag-single`, `rag-rerank`, `rag-moi` and `rag-moi-adaptive` on `rag-synth` (n seeded
questions about fictional entities, so closed-book should be near zero), and `rag-single` vs `rag-moi` on
`rag-synth-positioned` (each question over its own 5 passages with the gold one at position index % 5) for accuracy
by gold position. Each (task, preset) is an eval run in `<out>/<task>-<preset>/` (the run store resumes a killed
run with exactly the missing problems; the response cache makes a rerun free). Recall@k is the share of a
problem's hidden gold passages among the k passages the reader was shown (the notes `passages` of the last node
that has them: `read`, `permute` or an adaptive wave of permute), averaged over problems: the retriever's top 5 for
rag-single / rag-moi, the 5 kept by the reranker for rag-rerank. The JSON goes to `<out>/bench_rag.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from thinktank.arch import Architecture, load_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.eval.metrics import wilson_interval
from thinktank.eval.runner import run_eval, summarize
from thinktank.eval.store import ProblemRecord, RunStore
from thinktank.problems import Problem
from thinktank.tasks.registry import get_task

MAIN_PRESETS = ["single", "rag-single", "rag-rerank", "rag-moi", "rag-moi-adaptive"]
POSITION_PRESETS = ["rag-single", "rag-moi"]


def load(task: str, n: int, seed: int, limit: int | None) -> list[Problem]:
    return get_task(task, n=n, seed=seed).load(limit=limit)


def mean_interval(values: list[float], *, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Seeded percentile-bootstrap 95% interval of a mean (F1 is not a proportion, so no Wilson interval)."""
    if not values:
        return (0.0, 0.0)
    data = np.asarray(values, dtype=float)
    means = data[np.random.default_rng(seed).integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def answer_f1(record: ProblemRecord) -> float:
    """The answer's token F1 (the qa verdict's score); the answer is the first candidate."""
    if not record.candidates or record.answer is None:
        return 0.0
    return float(record.candidates[0].get("hidden_verdict", {}).get("score", 0.0))


def _nodes(trace: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield trace
    for child in trace.get("children", []):
        yield from _nodes(child)


def shown_passages(record: ProblemRecord) -> list[str] | None:
    """The passage ids the reader saw, from the last trace node that notes them (as serving reports); None: closed-book."""
    found = [node["notes"]["passages"] for node in _nodes(record.trace) if node.get("notes", {}).get("passages")]
    return list(found[-1]) if found else None


def recall(records: list[ProblemRecord], problems: dict[str, Problem]) -> float | None:
    shares = []
    for record in records:
        shown, gold = shown_passages(record), problems[record.problem_id].hidden.gold_passages
        if shown is not None and gold:
            shares.append(len(set(gold) & set(shown)) / len(gold))
    return sum(shares) / len(shares) if shares else None


def scripted_engine(model: str) -> Engine:
    """A plumbing check: an answer from the first passage shown, neutral scores for a judge."""

    def reply(request: Any, index: int) -> str:
        prompt = request.messages[-1]["content"]
        if "which criteria" in prompt:
            return "specificity: 0.5"
        if "Rate the passage" in prompt:
            return "Relevance: 5\nSpecificity: 5"
        first = re.search(r"\[1\] (.*)", prompt)
        return f"Answer: {first.group(1).split('.')[0] if first else 'unknown'}"

    return Engine({model: ScriptedBackend(reply)})


async def run_preset(engine: Engine, arch: Architecture, task: str, problems: list[Problem], out: Path, args: Any) -> RunStore:
    store = RunStore(out / f"{task}-{arch.name}")
    store.bind_config({"task": task, "arch": arch.name, "spec": arch.spec, "models": [args.model], "seed": args.seed,
                       "n": args.n, "scripted": args.scripted})  # fmt: skip
    await run_eval(engine, arch, problems, store, concurrency=args.concurrency)
    return store


def preset_row(store: RunStore, problems: dict[str, Problem]) -> dict[str, Any]:
    records, summary = store.records(), summarize(store)
    passed = sum(r.passed for r in records)
    f1 = [answer_f1(r) for r in records]
    return {
        "problems": len(records),
        "em": passed / len(records) if records else 0.0,
        "em_ci95": wilson_interval(passed, len(records)),
        "f1": sum(f1) / len(f1) if f1 else 0.0,
        "f1_ci95": mean_interval(f1),
        "tokens_per_problem": summary["tokens_per_problem"],
        "calls_per_problem": summary["calls_per_problem"],
        "wall_s": summary["wall_s"],
        "p50_latency_s": summary["p50_latency_s"],
        "recall_at_k": recall(records, problems),
        "errors": summary["errors"],
    }


def by_position(store: RunStore, problems: dict[str, Problem]) -> dict[str, Any]:
    from thinktank.tasks.rag_synth import gold_position  # the positioned task's own reading of its corpora

    counts: dict[int, list[int]] = {}
    for record in store.records():
        counts.setdefault(gold_position(problems[record.problem_id]), []).append(int(record.passed))
    accuracy = {pos: sum(v) / len(v) for pos, v in sorted(counts.items())}
    return {
        "accuracy_by_gold_position": accuracy,
        "problems_by_gold_position": {pos: len(v) for pos, v in sorted(counts.items())},
        "gap": max(accuracy.values()) - min(accuracy.values()) if accuracy else 0.0,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--n", type=int, default=100, help="questions per task (seeded)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions (a quick check)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-rag"))
    parser.add_argument("--backend", default=None, help="an OpenAI-compatible base URL (default: an embedded llama-server)")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4, help="problems in flight")
    parser.add_argument("--presets", nargs="*", default=MAIN_PRESETS)
    parser.add_argument("--scripted", action="store_true", help="a ScriptedBackend instead of a model (plumbing only)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    main_problems = load("rag-synth", args.n, args.seed, args.limit)
    positioned = load("rag-synth-positioned", args.n, args.seed, args.limit)
    result: dict[str, Any] = {"model": args.model, "n": len(main_problems), "seed": args.seed, "scripted": args.scripted}

    async def run_all(engine: Engine) -> None:
        rows: dict[str, Any] = {}
        index = {p.id: p for p in main_problems}
        for preset in args.presets:
            started = time.monotonic()
            store = await run_preset(engine, load_architecture(preset, [args.model]), "rag-synth", main_problems, args.out, args)
            rows[preset] = preset_row(store, index)
            store.close()
            print(f"{preset:18} EM {rows[preset]['em']:.3f}  F1 {rows[preset]['f1']:.3f}  ({time.monotonic() - started:.0f}s)")
        result["presets"] = rows
        pos_index = {p.id: p for p in positioned}
        result["positioned"] = {}
        for preset in POSITION_PRESETS:
            store = await run_preset(
                engine, load_architecture(preset, [args.model]), "rag-synth-positioned", positioned, args.out, args
            )
            result["positioned"][preset] = {**preset_row(store, pos_index), **by_position(store, pos_index)}
            store.close()

    if args.scripted:
        await run_all(scripted_engine(args.model))
    else:
        from thinktank.runtime import open_engine

        async with open_engine([args.model], backend_url=args.backend, slots=args.slots) as engine:
            await run_all(engine)
    path = args.out / "bench_rag.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"{'preset':18} {'EM [95% CI]':>22} {'F1 [95% CI]':>22} {'tok/q':>8} {'wall s':>8} {'recall@k':>9}")
    for preset, row in result["presets"].items():
        recall_text = "–" if row["recall_at_k"] is None else f"{row['recall_at_k']:.3f}"
        print(f"{preset:18} {row['em']:.3f} [{row['em_ci95'][0]:.3f}, {row['em_ci95'][1]:.3f}]"
              f"   {row['f1']:.3f} [{row['f1_ci95'][0]:.3f}, {row['f1_ci95'][1]:.3f}]"
              f" {row['tokens_per_problem']:8.0f} {row['wall_s']:8.1f} {recall_text:>9}")  # fmt: skip
    for preset, row in result["positioned"].items():
        accuracy = ", ".join(f"{pos}: {acc:.2f}" for pos, acc in row["accuracy_by_gold_position"].items())
        print(f"positioned {preset:11} by gold position {{{accuracy}}}  gap {row['gap']:.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
