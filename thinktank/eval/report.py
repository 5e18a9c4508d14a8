"""Compare runs: a terminal table and a self-contained HTML page with an accuracy-vs-cost plot."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from rich.table import Table

from thinktank.eval.metrics import paired_difference

COLUMNS = [
    ("run", "run"),
    ("arch", "arch"),
    ("problems", "n"),
    ("accuracy", "accuracy"),
    ("ci95", "95% CI"),
    ("coverage", "coverage"),
    ("tokens_per_problem", "tokens/problem"),
    ("tokens_with_cache_per_problem", "incl. cached"),
    ("calls_per_problem", "calls/problem"),
    ("p50_latency_s", "p50 s"),
    ("p95_latency_s", "p95 s"),
    ("wall_s", "wall s"),
    ("checked_but_wrong", "checked but wrong"),
]


PAIRED_COLUMNS = [("delta", "Δ vs baseline (paired 95% CI)"), ("p_value", "McNemar p")]


def with_baseline(summaries: list[dict[str, Any]], outcomes: list[dict[str, bool]], baseline: int) -> None:
    """Add each run's paired accuracy difference to run `baseline`, over the problems both runs graded."""
    base = outcomes[baseline]
    for i, (summary, own) in enumerate(zip(summaries, outcomes, strict=True)):
        if i == baseline:
            summary["delta"], summary["p_value"] = "baseline", ""
            continue
        shared = sorted(base.keys() & own.keys())
        paired = paired_difference([base[p] for p in shared], [own[p] for p in shared])
        summary["paired"] = paired
        note = "" if len(shared) == len(own) == len(base) else f" on {len(shared)} shared"
        summary["delta"] = f"{100 * paired.delta:+.1f} ({100 * paired.low:+.1f} to {100 * paired.high:+.1f}){note}"
        summary["p_value"] = f"{paired.p_value:.3g} ({paired.only_b} won, {paired.only_a} lost)"


def _columns(summaries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return COLUMNS + (PAIRED_COLUMNS if any("delta" in s for s in summaries) else [])


def _fmt(key: str, value: Any) -> str:
    if key in ("accuracy", "coverage"):
        return f"{100 * value:.1f}%"
    if key == "checked_but_wrong":  # candidates that passed the architecture's own checks and failed the hidden ones
        fooled, checked = value or (0, 0)
        return f"{fooled}/{checked} ({100 * fooled / checked:.1f}%)" if checked else "–"
    if key == "ci95":
        return f"{100 * value[0]:.1f}–{100 * value[1]:.1f}%"
    if isinstance(value, float):
        return f"{value:.1f}" if key != "calls_per_problem" else f"{value:.2f}"
    return str(value)


def comparison_table(summaries: list[dict[str, Any]]) -> Table:
    table = Table(title="thinktank evaluation")
    columns = _columns(summaries)
    for _, header in columns:
        table.add_column(header, justify="left" if header in ("run", "arch") else "right")
    for s in summaries:
        table.add_row(*(_fmt(k, s.get(k)) if k != "run" else Path(s["run"]).name for k, _ in columns))
    return table


def markdown_table(summaries: list[dict[str, Any]]) -> str:
    """The comparison as a GitHub table, for docs/benchmarks.md."""
    columns = _columns(summaries)
    rows = ["| " + " | ".join(header for _, header in columns) + " |", "|" + "---|" * len(columns)]
    for s in summaries:
        rows.append("| " + " | ".join(_fmt(k, s.get(k)) if k != "run" else Path(s["run"]).name for k, _ in columns) + " |")
    return "\n".join(rows)


def scatter_svg(summaries: list[dict[str, Any]], width: int = 640, height: int = 400) -> str:
    """Accuracy vs tokens per problem as an inline SVG; public because the search report plots its Pareto front with it."""
    pad = 60
    xs = [s["tokens_per_problem"] for s in summaries] or [1.0]
    x_max = max(xs) * 1.15 or 1.0
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">'
    ]
    lines.append(f'<rect x="{pad}" y="10" width="{width - pad - 10}" height="{height - pad - 10}" fill="none" stroke="#888"/>')

    def px(x: float) -> float:
        return pad + (width - pad - 10) * x / x_max

    def py(y: float) -> float:
        return 10 + (height - pad - 10) * (1 - y)

    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        lines.append(f'<text x="{pad - 8}" y="{py(tick) + 4}" text-anchor="end">{int(tick * 100)}%</text>')
    for i in range(5):
        x = x_max * i / 4
        lines.append(f'<text x="{px(x)}" y="{height - pad + 18}" text-anchor="middle">{x:.0f}</text>')
    lines.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">tokens per problem</text>')
    lines.append(f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">accuracy</text>')
    for s in summaries:
        x, y, (lo, hi) = px(s["tokens_per_problem"]), py(s["accuracy"]), s["ci95"]
        label = html.escape(str(s.get("arch") or Path(s["run"]).name))
        lines.append(f'<line x1="{x}" x2="{x}" y1="{py(lo)}" y2="{py(hi)}" stroke="#36c"/>')
        lines.append(f'<circle cx="{x}" cy="{y}" r="5" fill="#36c"><title>{label}</title></circle>')
        lines.append(f'<text x="{x + 8}" y="{y - 6}">{label}</text>')
    lines.append("</svg>")
    return "\n".join(lines)


def write_html(summaries: list[dict[str, Any]], path: Path) -> Path:
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_fmt(k, s.get(k)) if k != 'run' else Path(s['run']).name)}</td>" for k, _ in COLUMNS)
        + "</tr>"
        for s in summaries
    )
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in COLUMNS)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>thinktank report</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style>
</head><body><h1>thinktank report</h1><h2>Accuracy vs cost</h2>{scatter_svg(summaries)}
<h2>Runs</h2><table><tr>{head}</tr>{rows}</table>
<p>Accuracy intervals are 95% Wilson intervals; tokens count prompt + completion of every call an architecture made.</p>
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
