"""What the dashboard shows, read from the files runs leave behind; never written to.

An eval run is a directory holding `results.sqlite` (`thinktank.eval.store`), a search run one holding `pareto.json`
(`thinktank.search.report`). Names are paths relative to the runs root, so nested runs (a search's confirmation run)
are listed too; a name that leaves the root or no longer exists is `RunGone`, which the app turns into a 404 page.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinktank.eval.report import with_baseline
from thinktank.eval.runner import summarize
from thinktank.eval.store import ProblemRecord, RunStore
from thinktank.exceptions import StoreError

RESULTS = "results.sqlite"
PARETO = "pareto.json"


class RunGone(StoreError):
    """A run (or a problem in it) the page asked for is not there (any more): a 404, where other StoreErrors are 422s."""


@dataclass
class RunRow:
    """One line of the runs list: a summary, or why the run cannot be read."""

    name: str
    summary: dict[str, Any] | None = None
    planned: int | None = None
    error: str | None = None


@dataclass
class Comparison:
    baseline: dict[str, Any]
    others: list[dict[str, Any]]  # summaries with `paired`, `delta`, `p_value`, `won`, `lost` (problem ids)


@dataclass
class RepairRound:
    candidate: str
    round: int
    passed: bool
    reason: str
    diff: str


@dataclass
class ProblemView:
    run: str
    record: ProblemRecord
    repairs: list[RepairRound] = field(default_factory=list)


def _inside(root: Path, name: str) -> Path:
    path = (root / name).resolve()
    if not name or (path != root.resolve() and root.resolve() not in path.parents):
        raise RunGone(f"{name!r} is not a run under {root}")
    return path


def find_runs(root: Path) -> tuple[list[str], list[str]]:
    """(eval runs, search runs) under `root`, as sorted relative names."""
    if not root.is_dir():
        return [], []
    evals = sorted(p.parent.relative_to(root).as_posix() for p in root.rglob(RESULTS))
    searches = sorted(p.parent.relative_to(root).as_posix() for p in root.rglob(PARETO))
    return [e for e in evals if e != "."], [s for s in searches if s != "."]


class RunReader:
    """Opens one run for one request (the connection stays in the thread that made it)."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.path = _inside(root, name)
        if not (self.path / RESULTS).is_file():
            raise RunGone(f"run {name!r} no longer exists under {root} (deleted or moved?)")

    def __enter__(self) -> RunStore:
        self.store = RunStore.open_readonly(self.path)  # StoreError: another version's or a corrupt DB
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def run_row(root: Path, name: str) -> RunRow:
    try:
        with RunReader(root, name) as store:
            return RunRow(name, summarize(store), store.get_meta("planned"))
    except StoreError as exc:
        return RunRow(name, error=str(exc))


def list_runs(root: Path) -> list[RunRow]:
    return [run_row(root, name) for name in find_runs(root)[0]]


def row_count(root: Path, name: str) -> tuple[int, Any]:
    """(rows written, planned total): cheap enough to poll, as it parses no stored trace."""
    with RunReader(root, name) as store:
        return len(store.done_ids()), store.get_meta("planned")


def progress(root: Path, name: str) -> dict[str, Any]:
    """Rows written so far against the planned total: what the live view streams."""
    with RunReader(root, name) as store:
        records = store.records()
        planned = store.get_meta("planned")
    done = len(records)
    return {"done": done, "planned": planned, "passed": sum(r.passed for r in records),
            "tokens": sum(r.tokens for r in records), "finished": planned is not None and done >= planned}  # fmt: skip


def run_detail(root: Path, name: str) -> tuple[RunRow, list[ProblemRecord]]:
    with RunReader(root, name) as store:
        return RunRow(name, summarize(store), store.get_meta("planned")), store.records()


def compare(root: Path, names: list[str]) -> Comparison:
    """The first run is the baseline; each other run is paired with it problem by problem (`report --baseline`)."""
    summaries, outcomes = [], []
    for name in names:
        with RunReader(root, name) as store:
            summary = summarize(store)
            summary["name"] = name
            summaries.append(summary)
            outcomes.append({r.problem_id: r.passed for r in store.records()})
    with_baseline(summaries, outcomes, 0)
    base = outcomes[0]
    for summary, own in zip(summaries[1:], outcomes[1:], strict=True):
        shared = [p for p in base if p in own]
        summary["won"] = [p for p in shared if own[p] and not base[p]]
        summary["lost"] = [p for p in shared if base[p] and not own[p]]
    return Comparison(summaries[0], summaries[1:])


def problem(root: Path, name: str, problem_id: str) -> ProblemView:
    with RunReader(root, name) as store:
        record = next((r for r in store.records() if r.problem_id == problem_id), None)
    if record is None:
        raise RunGone(f"problem {problem_id!r} is not in run {name!r}")
    return ProblemView(name, record, repair_rounds(record.trace))


def repair_rounds(trace: dict[str, Any]) -> list[RepairRound]:
    """Each repair round's answer as a diff against the answer it repaired (the trace's `start` and `answer` notes)."""
    out: list[RepairRound] = []

    def walk(node: dict[str, Any], parent: str) -> None:
        notes = node.get("notes") or {}
        rounds = [ch for ch in node.get("children", []) if str(ch.get("name", "")).startswith("round")]
        if "start" in notes and rounds:  # a repaired candidate (`techniques.repair`): rounds in order
            previous = notes.get("start") or ""
            for r, rnd in enumerate(rounds, start=1):
                got = rnd.get("notes") or {}
                answer = got.get("answer") or ""
                diff = difflib.unified_diff(previous.splitlines(), answer.splitlines(), "before", f"round {r}", lineterm="")
                out.append(RepairRound(f"{parent}/{node['name']}", r, bool(got.get("passed")), str(got.get("reason", "")),
                                       "\n".join(diff)))  # fmt: skip
                previous = answer
        for child in node.get("children", []):
            walk(child, str(node.get("name")))

    walk(trace, "")
    return out


def search_data(root: Path, name: str) -> dict[str, Any]:
    path = _inside(root, name) / PARETO
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise RunGone(f"search run {name!r} no longer exists under {root} (deleted or moved?)") from exc
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path} is unreadable ({exc})") from exc


def search_yaml(root: Path, name: str, config_id: str) -> str:
    """The architecture YAML of one evaluated configuration, as `thinktank search` exports the chosen one."""
    from thinktank.search.space import Config  # the search package needs optuna: only this page does

    data = search_data(root, name)
    for row in data.get("evaluated", []) + data.get("front", []):
        if row.get("id") == config_id:
            return Config.model_validate(row["config"]).to_yaml(f"search-{config_id}")
    raise RunGone(f"configuration {config_id!r} is not in search run {name!r}")
