"""What a search leaves behind: run_dir/pareto.json, run_dir/report.html (chosen.yaml is written by the study), a terminal table.

The HTML reuses `thinktank.eval.report`'s accuracy-vs-tokens plot for the Pareto front, then lists the front with its
confidence intervals, the top configurations, the chosen architecture's YAML, dev vs test accuracy, pool cost vs search
cost, and the difficulty-adaptive comparison.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from thinktank.eval.report import scatter_svg
from thinktank.search.outcome import SearchOutcome, TrialResult, distinct, pareto_front

__all__ = ["front_table", "summary_lines", "write_report"]

NOTES = (
    "Dev accuracy is replayed from the pool: expected accuracy over draws (draw 0 = samples 0..n-1, as the exported"
    " architecture runs, plus random subsets when n is below the pool size), mean over problems; its 95% interval is a"
    " bootstrap over problems (1,000 resamples). 'draw 0' is the accuracy of exactly what the YAML does. Tokens are"
    " prompt + completion of every call a configuration makes, counted whether or not the response cache served them."
    " Latency is estimated from recorded call latencies (parallel calls: max(slowest, total / slots); steps add; cached"
    " calls at the model's measured seconds per token; sandbox time excluded). Test accuracy comes from a real eval run."
)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ci(ci: Any) -> str:
    return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}%"


def _row(r: TrialResult) -> dict[str, Any]:
    m = r.metrics
    return {
        "id": r.config.short_id(),
        "configuration": r.config.label(),
        "accuracy": _pct(m["accuracy"]),
        "95% CI": _ci(m["ci95"]),
        "draw 0": _pct(m["canonical_accuracy"]),
        "tokens": f"{m['tokens']:.0f}",
        "$": f"{m['usd']:.6f}",
        "latency s": f"{m['latency_s']:.2f}",
        "calls": f"{m['calls']:.1f}",
    }


def front_table(outcome: SearchOutcome, limit: int = 20) -> Table:
    table = Table(title=f"Pareto front (dev accuracy vs tokens/query) · {len(outcome.front)} configurations")
    rows = [_row(r) for r in outcome.front[-limit:]]
    for header in rows[0] if rows else ["configuration"]:
        table.add_column(header, justify="left" if header in ("id", "configuration") else "right")
    chosen = outcome.chosen.config.short_id()
    for row in rows:
        table.add_row(*(escape(str(v)) for v in row.values()), style="bold green" if row["id"] == chosen else None)
    return table


def summary_lines(outcome: SearchOutcome) -> list[str]:
    c = outcome.chosen
    lines = [f"chosen: {c.config.label()} — dev {_pct(c.accuracy)} ({_ci(c.metrics['ci95'])}), {c.tokens:.0f} tokens/query"]
    if "fresh" in outcome.costs:  # a space evaluated by real eval runs (RAG), not replayed from a pool
        fresh = outcome.costs["fresh"]
        lines.append(f"search cost {fresh['tokens']:,.0f} tokens over {fresh['configurations']} configurations evaluated"
                     f" fresh ({fresh['spent_tokens']:,.0f} spent, the rest served by the response cache)")  # fmt: skip
    else:
        pool, ext = outcome.costs["pool"], outcome.costs["extension"]
        lines.append(
            f"pool cost {pool['tokens']:,} tokens ({pool['during_search_tokens']:,} generated on demand during the search),"
            f" search cost {ext['tokens']:,} tokens (extension), ratio {outcome.costs['search_over_pool']:.2f}"
            f" (after-build / build {outcome.costs['during_search_over_build']:.2f})"
        )
    if outcome.confirmation:
        t = outcome.confirmation
        lines.append(
            f"test: {_pct(t['accuracy'])} ({_ci(t['ci95'])}) on {t['problems']} problems, {t['tokens']:.0f} tokens/query"
        )
    for comp in outcome.comparisons:
        where = f"{comp['arch']} ({Path(comp['run']).name})"
        lines.append(f"compare {where}: {_pct(comp['accuracy'])} on {comp['problems']}/{comp['of']} test problems, "
                     f"{comp['tokens']:.0f} tokens/query")  # fmt: skip
    return lines


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _data(outcome: SearchOutcome) -> dict[str, Any]:
    evaluated = distinct(outcome.results)
    top = sorted((r for r in evaluated if r.feasible), key=lambda r: (-r.accuracy, r.tokens))[:20]
    chosen = outcome.chosen
    dev_test: dict[str, Any] = {"dev_expected": chosen.accuracy, "dev_ci95": chosen.metrics["ci95"],
                                "dev_draw0": chosen.metrics["canonical_accuracy"], "dev_tokens": chosen.tokens}  # fmt: skip
    if outcome.confirmation:
        dev_test |= {"test": outcome.confirmation["accuracy"], "test_ci95": outcome.confirmation["ci95"],
                     "test_tokens": outcome.confirmation["tokens"]}  # fmt: skip
    return {
        **outcome.report,
        "trials": len(outcome.results),
        "distinct_configurations": len(evaluated),
        "chosen": chosen.to_dict() | {"yaml": chosen.config.to_yaml(f"search-{chosen.config.short_id()}")},
        "front": [r.to_dict() for r in outcome.front],
        "front_latency": [r.to_dict() for r in pareto_front(outcome.results, "latency_s")],
        "front_usd": [r.to_dict() for r in pareto_front(outcome.results, "usd")],
        "top": [r.to_dict() for r in top],
        "dev_vs_test": dev_test,
        "costs": outcome.costs,
        "confirmation": outcome.confirmation,
        "comparisons": outcome.comparisons,
        "adaptive_vs_fixed": outcome.adaptive,
        "evaluated": [r.to_dict() for r in evaluated],
        "notes": outcome.report.get("notes", NOTES),
    }


def write_report(outcome: SearchOutcome) -> dict[str, Any]:
    """Write pareto.json and report.html into the run directory; returns the JSON data."""
    data = _data(outcome)
    (outcome.run_dir / "pareto.json").write_text(json.dumps(data, indent=1, default=str))
    chosen_id = outcome.chosen.config.short_id()
    points = [
        {"tokens_per_problem": r.tokens, "accuracy": r.accuracy, "ci95": tuple(r.metrics["ci95"]), "run": "",
         "arch": r.config.short_id() + (" ★ chosen" if r.config.short_id() == chosen_id else "")}
        for r in outcome.front
    ]  # fmt: skip
    fresh = "fresh" in outcome.costs
    dev_test = [{"split": "dev (fresh eval)" if fresh else "dev (replayed, expected)", "accuracy": _pct(outcome.chosen.accuracy),
                 "95% CI": _ci(outcome.chosen.metrics["ci95"]), "tokens/query": f"{outcome.chosen.tokens:.0f}"}]  # fmt: skip
    if not fresh:
        dev_test.append({"split": "dev (replayed, draw 0)", "accuracy": _pct(outcome.chosen.metrics["canonical_accuracy"]),
                         "95% CI": "", "tokens/query": ""})  # fmt: skip
    if outcome.confirmation:
        t = outcome.confirmation
        split = f"test (real run, {t['problems']} problems, {t['cache_hits']} cache hits)"
        dev_test.append(
            {"split": split, "accuracy": _pct(t["accuracy"]), "95% CI": _ci(t["ci95"]), "tokens/query": f"{t['tokens']:.0f}"}
        )
    for comp in outcome.comparisons:
        dev_test.append({"split": f"test · {comp['arch']} ({comp['run']}, {comp['problems']}/{comp['of']} problems)",
                         "accuracy": _pct(comp["accuracy"]), "95% CI": "", "tokens/query": f"{comp['tokens']:.0f}"})  # fmt: skip
    adaptive = outcome.adaptive
    adaptive_html = "<p>(no adaptive and fixed-n configurations both evaluated)</p>"
    if adaptive:
        rows = [{"policy": k, **{key: (f"{v:.3f}" if isinstance(v, float) else v) for key, v in adaptive[k].items()}}
                for k in ("adaptive", "fixed")]  # fmt: skip
        unmatched = "" if adaptive["matched"] else " (no fixed-n configuration reached the adaptive one's accuracy)"
        adaptive_html = _table(rows) + f"<p>token ratio adaptive / fixed: {adaptive['token_ratio']:.2f}{unmatched}</p>"
    top_rows = [
        _row(r) for r in sorted((r for r in _distinct(outcome) if r.feasible), key=lambda r: (-r.accuracy, r.tokens))[:20]
    ]
    chosen_yaml = html.escape(data["chosen"]["yaml"])
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>thinktank search</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:nth-child(2){{text-align:left}}
pre{{background:#f4f4f4;padding:1em}}</style>
</head><body><h1>thinktank search · {html.escape(str(data["task"]))}</h1>
<p>models {html.escape(", ".join(data["models"]))} · dev {len(data["dev"])} / test {len(data["test"])} problems ·
{data["trials"]} trials, {data["distinct_configurations"]} distinct configurations · wall {data["wall_s"]:.0f} s</p>
<h2>Pareto front: dev accuracy vs tokens per query</h2>{scatter_svg(points)}
{_table([_row(r) for r in outcome.front])}
<p>Also non-dominated on accuracy vs latency: {html.escape(_ids(data["front_latency"]))};
on accuracy vs $: {html.escape(_ids(data["front_usd"]))} (pareto.json lists all three fronts).</p>
<h2>Chosen architecture</h2><p>{html.escape(outcome.chosen.config.label())}</p><pre>{chosen_yaml}</pre>
<h2>Dev vs test</h2>{_table(dev_test)}
{_cost_html(outcome.costs)}
<h2>Difficulty-adaptive compute vs the best fixed n</h2>{adaptive_html}
<h2>Top configurations</h2>{_table(top_rows)}
<h2>Notes</h2><p>{html.escape(data["notes"])}</p><p>{html.escape(str(data["not_replayable"]))}.</p>
</body></html>"""
    (outcome.run_dir / "report.html").write_text(page)
    return data


def _cost_html(costs: dict[str, Any]) -> str:
    if "fresh" in costs:
        fresh = costs["fresh"]
        rows = [{"what": f"dev evaluations of {fresh['configurations']} configurations", "tokens": f"{fresh['tokens']:.0f}",
                 "spent (not served by the response cache)": f"{fresh['spent_tokens']:.0f}"}]  # fmt: skip
        return f"<h2>Search cost</h2>{_table(rows)}<p>Every configuration was evaluated by a real eval on the dev split.</p>"
    rows = [
        {"what": "pool (samples, tests, judge, repair within the pool's sizes)", "tokens": costs["pool"]["tokens"],
         "of which on demand during the search": costs["pool"]["during_search_tokens"],
         "served by the response cache": costs["pool"]["tokens"] - costs["pool"]["fresh_tokens"]},
        {"what": "search (extension: samples beyond the pool's n)", "tokens": costs["extension"]["tokens"],
         "of which on demand during the search": costs["extension"]["during_search_tokens"],
         "served by the response cache": costs["extension"]["tokens"] - costs["extension"]["fresh_tokens"]},
    ]  # fmt: skip
    return f"""<h2>Pool cost vs search cost</h2>{_table(rows)}
<p>search / pool = {costs["search_over_pool"]:.2f} (target ≤ 2 for ≥ 1,000 configurations). Stricter: everything
generated after the eager build (on-demand judge scores and repair chains, and the extension) over the eager build =
{costs["during_search_over_build"]:.2f}.</p>"""


def _ids(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['id']} ({r['label']})" for r in rows) or "(none)"


def _distinct(outcome: SearchOutcome) -> list[TrialResult]:
    return distinct(outcome.results)
