"""The dashboard's HTML: small server-rendered pages (every value escaped here), plus a little JS per page."""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import urlencode

from thinktank.eval.store import ProblemRecord
from thinktank.ui.data import Comparison, ProblemView, RunRow

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}
td.l,th.l{text-align:left}pre{background:#f4f4f4;padding:.6em;margin:0;white-space:pre-wrap;max-width:70em}
.pass{color:#080}.fail{color:#b00}.err{color:#b00}nav a{margin-right:1em}ul.tree{list-style:none;padding-left:1.2em}
.muted{color:#777}progress{width:20em}.filters select{margin-right:1em}"""


def q(**params: Any) -> str:
    """A query string, escaped for an HTML attribute."""
    return escape(urlencode(params, doseq=True))


def js(value: Any) -> str:
    """A value as a JS literal inside <script>: JSON, with `<` escaped so no string can close the script element."""
    return json.dumps(value).replace("<", "\\u003c")


def page(title: str, body: str, script: str = "") -> str:
    js = '<script src="/static/chart.umd.min.js"></script>' if "new Chart" in script else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)} · thinktank</title>
<style>{STYLE}</style>{js}</head><body><nav><a href="/">runs</a></nav><h1>{escape(title)}</h1>{body}
<script>{script}</script></body></html>"""


def message(title: str, text: str) -> str:
    return page(title, f'<p id="message">{escape(text)}</p><p><a href="/">back to the runs list</a></p>')


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def ci(c: Any) -> str:
    return f"{100 * c[0]:.1f}–{100 * c[1]:.1f}%"


def _models(summary: dict[str, Any]) -> str:
    return ", ".join(summary.get("models") or [])


def runs_page(root: str, rows: list[RunRow], searches: list[str]) -> str:
    if not rows and not searches:
        return page(
            "thinktank runs",
            f'<p id="empty">No runs under <code>{escape(root)}</code> yet: start one with'
            " <code>thinktank eval --run-dir …</code> (a run is a directory with results.sqlite).</p>",
        )
    body = [f"<p>Runs under <code>{escape(root)}</code>. Tick runs and press compare; the first ticked is the baseline.</p>"]
    ok = [r.summary for r in rows if r.summary]
    options = {
        k: sorted({str(v) for v in vals})
        for k, vals in (("task", [s["task"] for s in ok]), ("arch", [s["arch"] for s in ok]), ("model", [_models(s) for s in ok]))
    }
    body.append(
        '<div class="filters">'
        + "".join(
            f'<label>{k} <select data-filter="{k}"><option value="">all</option>'
            + "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in vals)
            + "</select></label>"
            for k, vals in options.items()
        )
        + "</div>"
    )
    body.append(
        '<form action="/compare" method="get"><table id="runs"><tr><th></th><th class="l">run</th><th class="l">task</th>'
        '<th class="l">arch</th><th class="l">model</th><th>problems</th><th>accuracy</th><th>95% CI</th>'
        "<th>tokens/problem</th><th>tokens</th><th>wall s</th></tr>"
    )
    for r in rows:
        link = f'<a href="/run?{q(name=r.name)}">{escape(r.name)}</a>'
        if r.summary is None:
            body.append(
                f'<tr class="unreadable" data-run="{escape(r.name)}"><td></td><td class="l">{link}</td>'
                f'<td class="l err" colspan="9">unreadable: {escape(r.error or "")}</td></tr>'
            )
            continue
        s = r.summary
        n = s["problems"]
        done = f"{n}/{r.planned}" if r.planned is not None and r.planned != n else str(n)
        attrs = f'data-task="{escape(str(s["task"]))}" data-arch="{escape(str(s["arch"]))}" data-model="{escape(_models(s))}"'
        body.append(
            f'<tr class="run" data-run="{escape(r.name)}" {attrs}><td><input type="checkbox" name="run" value="{escape(r.name)}">'
            f'</td><td class="l">{link}</td><td class="l">{escape(str(s["task"]))}</td>'
            f'<td class="l">{escape(str(s["arch"]))}</td>'
            f'<td class="l">{escape(_models(s))}</td><td class="problems">{done}</td>'
            f'<td class="accuracy">{pct(s["accuracy"])}</td>'
            f'<td class="ci">{ci(s["ci95"])}</td><td class="tpp">{s["tokens_per_problem"]:.1f}</td>'
            f'<td class="tokens">{round(s["tokens_per_problem"] * n)}</td><td class="wall">{s["wall_s"]:.1f}</td></tr>'
        )
    body.append('</table><button type="submit" id="compare">compare</button></form>')
    if searches:
        body.append(
            "<h2>Search runs</h2><ul id='searches'>"
            + "".join(f'<li><a href="/search?{q(name=s)}">{escape(s)}</a></li>' for s in searches)
            + "</ul>"
        )
    script = """document.querySelectorAll('[data-filter]').forEach(sel => sel.addEventListener('change', () => {
  const want = {}; document.querySelectorAll('[data-filter]').forEach(s => want[s.dataset.filter] = s.value);
  document.querySelectorAll('#runs tr.run').forEach(tr => {
    tr.hidden = Object.entries(want).some(([k, v]) => v && tr.dataset[k] !== v); });
}));"""
    return page("thinktank runs", "".join(body), script)


def _verdict(passed: bool, reason: str = "") -> str:
    word = '<span class="pass">pass</span>' if passed else '<span class="fail">fail</span>'
    return word + (f" — {escape(reason)}" if reason and not passed else "")


def run_page(row: RunRow, records: list[ProblemRecord]) -> str:
    s = row.summary or {}
    n, planned = s.get("problems", 0), row.planned
    live = ""
    if planned is not None and n < planned:
        live = (
            f'<p id="live">in progress: <progress id="bar" max="{planned}" value="{n}"></progress> '
            f'<span id="done">{n}</span>/<span id="planned">{planned}</span> problems, '
            f'<span id="acc">{pct(s.get("accuracy", 0))}</span> so far <span id="state" class="muted">live</span></p>'
        )
    head = (
        f"<p>task <b>{escape(str(s.get('task')))}</b> · arch <b>{escape(str(s.get('arch')))}</b> · models "
        f'{escape(_models(s))} · accuracy <b id="accuracy">{pct(s.get("accuracy", 0))}</b> ({ci(s.get("ci95", (0, 0)))}) '
        f"on {n} problems · {s.get('tokens_per_problem', 0):.1f} tokens/problem · wall {s.get('wall_s', 0):.1f} s</p>"
    )
    rows = "".join(
        f'<tr><td class="l"><a href="/problem?{q(run=row.name, id=r.problem_id)}">{escape(r.problem_id)}</a></td>'
        f'<td class="l">{_verdict(r.passed, r.reason)}</td><td>{r.n_correct}/{r.n_candidates}</td><td>{r.tokens}</td>'
        f"<td>{r.calls}</td><td>{r.latency_s:.2f}</td></tr>"
        for r in records
    )
    table = (
        '<table id="problems"><tr><th class="l">problem</th><th class="l">verdict</th><th>correct candidates</th>'
        f"<th>tokens</th><th>calls</th><th>latency s</th></tr>{rows}</table>"
    )
    script = ""
    if live:
        script = f"""const es = new EventSource('/events?' + new URLSearchParams({{run: {js(row.name)}}}));
es.addEventListener('progress', e => {{ const p = JSON.parse(e.data);
  document.getElementById('bar').value = p.done; document.getElementById('done').textContent = p.done;
  document.getElementById('acc').textContent = (p.done ? 100 * p.passed / p.done : 0).toFixed(1) + '%';
  if (p.finished) {{ document.getElementById('state').textContent = 'finished'; es.close(); }} }});
es.addEventListener('gone', e => {{ document.getElementById('state').textContent = JSON.parse(e.data).message; es.close(); }});"""
    return page(f"run {row.name}", live + head + table, script)


def compare_page(c: Comparison) -> str:
    b = c.baseline
    rows = []
    for s in c.others:
        p = s["paired"]

        def links(ids: list[str], run: str) -> str:
            return ", ".join(f'<a href="/problem?{q(run=run, id=i)}">{escape(i)}</a>' for i in ids) or "–"

        rows.append(
            f'<tr data-run="{escape(s["name"])}"><td class="l">{escape(s["name"])}</td>'
            f'<td class="l">{escape(str(s["arch"]))}</td>'
            f'<td>{pct(s["accuracy"])}</td><td class="delta">{100 * p.delta:+.1f}</td>'
            f'<td class="dci">{100 * p.low:+.1f} to {100 * p.high:+.1f}</td><td class="p">{p.p_value:.3g}</td>'
            f'<td>{p.problems}</td><td class="l won">{len(s["won"])}: {links(s["won"], s["name"])}</td>'
            f'<td class="l lost">{len(s["lost"])}: {links(s["lost"], s["name"])}</td></tr>'
        )
    body = (
        f'<p>baseline <b id="baseline">{escape(b["name"])}</b> ({escape(str(b["arch"]))}): {pct(b["accuracy"])} '
        f"on {b['problems']} problems. Δ is the paired accuracy difference in points over the problems both runs graded,"
        " with a paired bootstrap 95% interval; p is McNemar's exact test on the problems where they disagree.</p>"
        '<table id="comparison"><tr><th class="l">run</th><th class="l">arch</th><th>accuracy</th><th>Δ points</th>'
        "<th>Δ 95% CI</th><th>McNemar p</th><th>shared</th><th class='l'>won (solved, baseline did not)</th>"
        f"<th class='l'>lost</th></tr>{''.join(rows)}</table>"
    )
    return page("comparison", body)


def _tree(node: dict[str, Any]) -> str:
    u = node.get("usage", {})
    calls = "".join(
        f'<li class="call">{escape(str(c["status"]))} {escape(str(c["model"]))} samples {escape(str(c["sample_indices"]))} · '
        f"{c['usage']['prompt_tokens']}+{c['usage']['completion_tokens']} tok · {c['latency_s']:.2f}s</li>"
        for c in node.get("calls", [])
    )
    notes = node.get("notes") or {}
    shown = {k: v for k, v in notes.items() if k not in ("answer", "start", "feedback")}
    note = f' <span class="muted">{escape(json.dumps(shown, default=str)[:400])}</span>' if shown else ""
    err = f' <span class="err">{escape(str(node["error"]))}</span>' if node.get("error") else ""
    children = "".join(_tree(ch) for ch in node.get("children", []))
    return (
        f'<li class="node"><details open><summary><b>{escape(str(node.get("name")))}</b> · {u.get("calls", 0)} calls · '
        f"{u.get('prompt_tokens', 0)}+{u.get('completion_tokens', 0)} tokens{err}{note}</summary>"
        f'<ul class="tree">{calls}{children}</ul></details></li>'
    )


def problem_page(v: ProblemView) -> str:
    r = v.record
    head = (
        f'<p>run <a href="/run?{q(name=v.run)}">{escape(v.run)}</a> · <span id="verdict">{_verdict(r.passed, r.reason)}</span>'
        f" · {r.n_correct}/{r.n_candidates} candidates correct · {r.tokens} tokens · {r.calls} calls · "
        f"{r.latency_s:.2f} s</p>"
    )
    if r.error:
        head += f'<p class="err">error: {escape(r.error)}</p>'
    cands = []
    for i, c in enumerate(r.candidates):
        hv = c.get("hidden_verdict") or {}
        public = (
            "<br>".join(
                f"{escape(k)}: {_verdict(bool(pv.get('passed')), str(pv.get('reason', '')))}"
                for k, pv in (c.get("verdicts") or {}).items()
            )
            or '<span class="muted">none</span>'
        )
        cands.append(
            f'<tr class="candidate"><td>{i}</td><td class="l">{escape(str(c.get("node")))}</td>'
            f'<td class="l">{escape(str(c.get("model")))}</td><td class="l"><pre>{escape(str(c.get("answer")))}</pre></td>'
            f'<td class="l public">{public}</td>'
            f'<td class="l hidden">{_verdict(bool(hv.get("passed")), str(hv.get("reason", "")))}</td></tr>'
        )
    table = (
        '<h2>Candidates</h2><table id="candidates"><tr><th>#</th><th class="l">node</th><th class="l">model</th>'
        '<th class="l">answer</th><th class="l">public verdicts</th><th class="l">hidden verdict</th></tr>'
        + "".join(cands)
        + "</table>"
    )
    repairs = ""
    if v.repairs:
        repairs = "<h2>Repair rounds</h2>" + "".join(
            f'<div class="repair"><h3>{escape(x.candidate)} · round {x.round}: {_verdict(x.passed, x.reason)}</h3>'
            f"<pre class='diff'>{escape(x.diff) or '(no change)'}</pre></div>"
            for x in v.repairs
        )
    tree = f'<h2>Call tree</h2><ul class="tree" id="tree">{_tree(r.trace)}</ul>'
    return page(f"problem {r.problem_id}", head + tree + table + repairs)


def search_page(name: str, data: dict[str, Any]) -> str:
    def point(row: dict[str, Any]) -> dict[str, Any]:
        return {"x": row["tokens"], "y": row["accuracy"], "id": row["id"], "label": row["label"]}

    front = [point(r) for r in data.get("front", [])]
    on_front = {p["id"] for p in front}
    others = [point(r) for r in data.get("evaluated", []) if r.get("feasible") and r["id"] not in on_front]
    chosen = data.get("chosen") or {}
    rows = "".join(
        f'<tr data-id="{escape(r["id"])}"><td class="l"><a href="/yaml?{q(search=name, id=r["id"])}">{escape(r["id"])}</a></td>'
        f'<td class="l">{escape(r["label"])}</td><td>{pct(r["accuracy"])}</td>'
        f"<td>{ci(r['ci95'])}</td><td>{r['tokens']:.0f}</td></tr>"
        for r in data.get("front", [])
    )
    body = (
        f"<p>task {escape(str(data.get('task')))} · models {escape(', '.join(data.get('models') or []))} · "
        f"{data.get('trials')} trials, {data.get('distinct_configurations')} distinct configurations · chosen "
        f'<b id="chosen">{escape(str(chosen.get("id")))}</b> {escape(str(chosen.get("label")))}</p>'
        "<h2>Pareto front: dev accuracy vs tokens per query</h2><p class='muted'>Hover a point for its configuration;"
        ' click it for its YAML.</p><div style="max-width:900px"><canvas id="pareto"></canvas></div>'
        '<table id="front"><tr><th class="l">id</th><th class="l">configuration</th><th>dev accuracy</th><th>95% CI</th>'
        f"<th>tokens</th></tr>{rows}</table>"
    )
    script = f"""const NAME = {js(name)};
const chart = new Chart(document.getElementById('pareto'), {{type: 'scatter',
  data: {{datasets: [
    {{label: 'Pareto front', data: {js(front)}, showLine: true, borderColor: '#36c',
     backgroundColor: '#36c', pointRadius: 6}},
    {{label: 'other configurations', data: {js(others)}, backgroundColor: 'rgba(120,120,120,.35)', pointRadius: 3}}]}},
  options: {{animation: false, parsing: false,
    scales: {{x: {{title: {{display: true, text: 'tokens per query'}}}},
             y: {{title: {{display: true, text: 'dev accuracy'}}, ticks: {{callback: v => (100 * v).toFixed(0) + '%'}}}}}},
    plugins: {{tooltip: {{callbacks: {{label: c => [c.raw.id + ' ' + c.raw.label,
      (100 * c.raw.y).toFixed(1) + '% · ' + c.raw.x.toFixed(0) + ' tokens']}}}}}},
    onClick: (e, items) => {{ if (items.length) {{ const p = items[0];
      const raw = chart.data.datasets[p.datasetIndex].data[p.index];
      location.href = '/yaml?' + new URLSearchParams({{search: NAME, id: raw.id}}); }} }}}}}});
window.paretoChart = chart;"""
    return page(f"search {name}", body, script)


def yaml_page(name: str, config_id: str, text: str) -> str:
    body = (
        f'<p>configuration {escape(config_id)} of search <a href="/search?{q(name=name)}">{escape(name)}</a>; '
        f"run it with <code>thinktank eval --arch &lt;this file&gt;</code>.</p><pre id='yaml'>{escape(text)}</pre>"
    )
    return page(f"configuration {config_id}", body)
