"""Peers side by side with thinktank, in one run on one llama-server (issue 17, part 3).

    .venv/bin/python benchmarks/bench_peers.py --tasks humaneval --limit 5 \\
        --approaches thinktank:single,thinktank:adaptive-vote,optillm:bon,its_hub:self_consistency

One embedded llama-server (thinktank's `LlamaServer`, `--slots` slots, the run's model) serves every system. Each
peer lives in its own venv under `~/.cache/thinktank/peers/<peer>/` (made here with `pip install <pinned
version>` on first use; never a thinktank dependency) and runs in a subprocess of it: a small driver
(`benchmarks/peers/<peer>_driver.py`) reads the problems as JSONL on stdin and writes the answer it chose for each
as JSONL. Every answer — a peer's or a thinktank preset's — is extracted and graded here by the task's kind on the
hidden checks, so grading is the same for all. DSPy's reward runs the public checks through thinktank's sandbox
(`benchmarks/peers/public_checks.py`, a subprocess of thinktank's venv).

Approaches run one after another over all problems of a task; llama-server's `/metrics` counters are read just
before the first problem is handed over and just after the last answer, so each row's prompt (evaluated, not
prompt-cache hits) and completion tokens are what the *server* counted. Wall time is the same span, given as a
ratio to thinktank's greedy `single` on the same task in the same results file. Within a task every system gets
the same problems, the task's prompt as the only user message, `max_tokens` and `--concurrency` problems at once.

A peer that cannot be installed or started gets rows that say "not run" and why; the run goes on. Each finished
(task, approach) is appended to the results JSONL at once, so a killed run resumes with what is missing (rows
"not run" are retried). The table is printed and written next to the results (`.md`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DRIVERS = HERE / "peers"
GREEDY = "thinktank:single"


@dataclass(frozen=True)
class PeerSpec:
    """A peer: what to pip install into its venv, the distribution whose version is recorded, its approaches."""

    name: str
    requirement: str
    distribution: str
    approaches: tuple[str, ...]
    driver_path: Path | None = None  # default: benchmarks/peers/<name>_driver.py

    @property
    def driver(self) -> Path:
        return self.driver_path or DRIVERS / f"{self.name}_driver.py"


PEERS: dict[str, PeerSpec] = {
    "optillm": PeerSpec("optillm", "optillm==0.4.0", "optillm", ("none", "bon", "moa", "self_consistency", "plansearch")),
    "its_hub": PeerSpec("its_hub", "its_hub[lm]==1.2.0", "its_hub", ("self_consistency", "best_of_n")),
    "dspy": PeerSpec("dspy", "dspy==3.4.1", "dspy", ("best_of_n", "refine")),
}
PRESETS = ("single", "adaptive-vote", "sample-8-exec", "sample-8-vote")


@dataclass(frozen=True)
class PeerSetup:
    """A peer's venv, ready (`python` and `version` set) or not (`reason` says why)."""

    name: str
    python: Path | None = None
    version: str | None = None
    reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.python is not None and self.reason is None


def _tail(text: str, lines: int = 4) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def installed_version(python: Path, distribution: str) -> str | None:
    """The distribution's version in that interpreter's environment, or None when it is not installed there."""
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    try:
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def ensure_peer(spec: PeerSpec, root: Path, *, install: bool = True, timeout_s: float = 3600.0) -> PeerSetup:
    """The peer's venv under `root/<name>`, made and pip-installed when missing (unless `install` is False).

    Never raises for a peer that cannot be had: the returned setup's `reason` says what failed (no venv, pip's
    exit code and last lines, a version other than the pinned one), and the benchmark reports that peer as not run.
    """
    venv = root / spec.name
    python = venv / "bin" / "python"
    if not python.exists():
        if not install:
            return PeerSetup(spec.name, reason=f"not installed: {venv} has no venv (installing was turned off)")
        venv.parent.mkdir(parents=True, exist_ok=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, check=False)
        if made.returncode != 0 or not python.exists():
            return PeerSetup(spec.name, reason=f"could not create a venv at {venv}: {_tail(made.stderr) or 'no error text'}")
    version = installed_version(python, spec.distribution)
    pinned = spec.requirement.partition("==")[2] or None
    if version is None or (pinned is not None and version != pinned):
        if not install:
            have = f"version {version}" if version else "nothing"
            return PeerSetup(spec.name, reason=f"not installed: {venv} has {have} of {spec.requirement}")
        log = venv / "pip-install.log"
        try:
            with open(log, "w") as out:
                pip = subprocess.run([str(python), "-m", "pip", "install", spec.requirement], stdout=out,
                                     stderr=subprocess.STDOUT, timeout=timeout_s, check=False)  # fmt: skip
            code: int | str = pip.returncode
        except (OSError, subprocess.TimeoutExpired) as exc:
            code = f"{type(exc).__name__}: {exc}"
        if code != 0:
            text = log.read_text(errors="replace") if log.exists() else ""
            return PeerSetup(spec.name, reason=f"pip install {spec.requirement} failed ({code}): {_tail(text)}; log {log}")
        version = installed_version(python, spec.distribution)
        if version is None:
            return PeerSetup(spec.name, reason=f"pip installed {spec.requirement} but {spec.distribution} has no version")
    return PeerSetup(spec.name, python=python, version=version)


# ---------------------------------------------------------------------------------------------------------------
# one approach over one task's problems


@dataclass
class Outcome:
    """What one approach produced for one task: the chosen reply per problem id, plus the run's measurements."""

    texts: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    reported: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    version: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    not_run: str | None = None  # why the approach could not run at all


Counters = Callable[[], Awaitable[dict[str, float]]]
PROMPT, COMPLETION = "llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total"


async def measured(outcome: Outcome, counters: Counters, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` between two reads of the server's counters; its span and token deltas go into `outcome`."""
    before = await counters()
    started = time.perf_counter()
    try:
        await work()
    finally:
        outcome.wall_s = time.perf_counter() - started
        after = await counters()
        outcome.prompt_tokens = int(after.get(PROMPT, 0) - before.get(PROMPT, 0))
        outcome.completion_tokens = int(after.get(COMPLETION, 0) - before.get(COMPLETION, 0))


def task_json(task: Any) -> str:
    """A `TaskInput` as one JSON line (only what a technique may see: the prompt and the public checks)."""
    return json.dumps(dataclasses.asdict(task))


async def run_driver(
    python: Path, driver: Path, argv: Sequence[str], tasks: Sequence[Any], counters: Counters, log: Path, *,
    ready_timeout_s: float = 600.0, answer_timeout_s: float = 3600.0,
) -> Outcome:  # fmt: skip
    """Start a peer's driver, wait for its header, then hand over `tasks` and collect one answer line per task.

    A driver that exits or refuses before it is ready makes an `Outcome` with `not_run` (its error or log tail);
    one that stops answering for `answer_timeout_s` is killed and its missing problems count as errors."""
    outcome = Outcome()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:
        proc = await asyncio.create_subprocess_exec(
            str(python), str(driver), *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=err, limit=1 << 24,
        )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    try:
        try:
            line = await asyncio.wait_for(stdout.readline(), ready_timeout_s)
        except TimeoutError:
            line = b""
        header: dict[str, Any] = {}
        if line:
            try:
                header = json.loads(line)
            except ValueError:
                header = {"ready": False, "error": f"the driver printed {line[:200]!r} instead of its header"}
        if not header.get("ready"):
            why = header.get("error") or f"the driver ended before it was ready; log: {_tail(log.read_text(errors='replace'))}"
            outcome.not_run = str(why)
            return outcome
        outcome.version, outcome.settings = str(header.get("version", "")), dict(header.get("settings") or {})

        async def work() -> None:
            stdin.write("".join(task_json(t) + "\n" for t in tasks).encode())
            await stdin.drain()
            stdin.close()
            while len(outcome.texts) + len(outcome.errors) < len(tasks):
                raw = await asyncio.wait_for(stdout.readline(), answer_timeout_s)
                if not raw:
                    break
                try:
                    answer = json.loads(raw)
                    pid = str(answer["id"])
                except (ValueError, KeyError, TypeError):  # not a protocol line: keep it in the log, go on
                    with open(log, "ab") as err:
                        err.write(b"[bench_peers: not an answer line] " + raw)
                    continue
                outcome.seconds[pid] = float(answer.get("seconds") or 0.0)
                outcome.reported[pid] = dict(answer.get("usage") or {})
                if answer.get("error"):
                    outcome.errors[pid] = str(answer["error"])
                else:
                    outcome.texts[pid] = str(answer.get("text") or "")

        with contextlib.suppress(TimeoutError):  # a driver that stopped answering: its missing answers are errors
            await measured(outcome, counters, work)
        for t in tasks:
            if t.problem_id not in outcome.texts and t.problem_id not in outcome.errors:
                outcome.errors[t.problem_id] = "the driver gave no answer (it ended or stopped answering)"
        return outcome
    finally:
        # a driver that is done exits by itself (the optillm one stops its proxy first): give it the time to
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 60)
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


# ---------------------------------------------------------------------------------------------------------------
# rows, the results file, the table


@dataclass
class Row:
    task: str
    approach: str  # "<system>:<approach>"
    status: str  # "ok" | "not run"
    reason: str = ""
    n: int = 0
    passed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    version: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.task, self.approach)


def not_run(task: str, approach: str, reason: str, run: dict[str, Any]) -> Row:
    return Row(task, approach, "not run", reason, run=run)


class Results:
    """The results JSONL: one row per finished (task, approach); the last row for a key wins."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self) -> dict[tuple[str, str], Row]:
        out: dict[tuple[str, str], Row] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    row = Row(**json.loads(line))
                    out[row.key] = row
        return out

    def done(self) -> set[tuple[str, str]]:
        """Keys that need no re-run: rows that ran (a "not run" row is tried again)."""
        return {key for key, row in self.rows().items() if row.status == "ok"}

    def append(self, row: Row) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as out:
            out.write(json.dumps(dataclasses.asdict(row)) + "\n")


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}×" if base > 0 else "n/a"


def render_table(rows: Sequence[Row]) -> str:
    """The markdown table: accuracy with a 95% Wilson interval, server-counted tokens, wall time vs greedy."""
    from thinktank.eval.metrics import wilson_interval

    greedy = {r.task: r for r in rows if r.approach == GREEDY and r.status == "ok"}
    lines = [
        "| task | system: approach | passed | accuracy (95% CI) | prompt tok/problem | completion tok/problem"
        " | completion vs greedy | wall s | wall vs greedy | version, settings |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.status != "ok":
            lines.append(f"| {r.task} | {r.approach} | not run | — | — | — | — | — | — | {r.reason} |")
            continue
        low, high = wilson_interval(r.passed, r.n)
        base = greedy.get(r.task)
        per = max(r.n, 1)
        own = "; ".join(f"{k}: {v}" for k, v in r.settings.items())
        lines.append(
            f"| {r.task} | {r.approach} | {r.passed}/{r.n} | {r.passed / per:.0%} ({low:.0%}–{high:.0%})"
            f" | {r.prompt_tokens / per:,.0f} | {r.completion_tokens / per:,.0f}"
            f" | {_ratio(r.completion_tokens, base.completion_tokens) if base else 'n/a'}"
            f" | {r.wall_s:.1f} | {_ratio(r.wall_s, base.wall_s) if base else 'n/a'}"
            f" | {r.version}{'; ' + own if own else ''} |"
        )
    return "\n".join(lines)


def _best(rows: Sequence[Row]) -> Row | None:
    """The most accurate row; between equals, the one the server counted fewer tokens for."""
    return min(rows, key=lambda r: (-r.passed / max(r.n, 1), r.prompt_tokens + r.completion_tokens), default=None)


def verdicts(rows: Sequence[Row]) -> list[str]:
    """Per task, issue 17's target: thinktank's best ≥ every peer's best in accuracy, at ≤ its server-counted tokens
    (prompt + completion), with the paired difference on the same problems (bootstrap 95% CI, McNemar's p)."""
    from thinktank.eval.metrics import paired_difference

    lines = []
    for task in dict.fromkeys(r.task for r in rows):
        ran = [r for r in rows if r.task == task and r.status == "ok"]
        ours = _best([r for r in ran if r.approach.startswith("thinktank:")])
        theirs = _best([r for r in ran if not r.approach.startswith("thinktank:")])
        if ours is None or theirs is None:
            lines.append(f"{task}: no verdict (a thinktank row and a peer row are both needed)")
            continue
        by_id = {d["id"]: d["passed"] for d in theirs.problems}
        shared = [d for d in ours.problems if d["id"] in by_id]
        delta = paired_difference([by_id[d["id"]] for d in shared], [d["passed"] for d in shared])
        tokens = [r.prompt_tokens + r.completion_tokens for r in (ours, theirs)]
        ratio = tokens[0] / max(tokens[1], 1)
        accurate = ours.passed / max(ours.n, 1) >= theirs.passed / max(theirs.n, 1)
        met = "met" if accurate and tokens[0] <= tokens[1] else "NOT met"
        lines.append(
            f"{task}: target {met} — thinktank's best {ours.approach} {ours.passed}/{ours.n} at {tokens[0]:,} tokens vs the"
            f" best peer {theirs.approach} {theirs.passed}/{theirs.n} at {tokens[1]:,} tokens ({ratio:.2f}×);"
            f" paired Δ {delta.delta:+.1%} (95% CI {delta.low:+.1%} to {delta.high:+.1%}), McNemar p = {delta.p_value:.3g}"
        )
    return lines


def parse_approaches(text: str, peers: dict[str, PeerSpec] = PEERS, presets: Sequence[str] = PRESETS) -> list[str]:
    """`thinktank:single,optillm,its_hub:best_of_n` → full names; a bare peer or `thinktank` means all of its
    approaches. thinktank's greedy `single` always runs (first): the time ratios are to it."""
    chosen: list[str] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        system, _, approach = item.partition(":")
        if system == "thinktank":
            names = [approach] if approach else list(presets)
        elif system in peers:
            names = [approach] if approach else list(peers[system].approaches)
        else:
            raise SystemExit(f"unknown system {system!r} in --approaches; known: thinktank, {', '.join(peers)}")
        chosen += [f"{system}:{name}" for name in names]
    return list(dict.fromkeys([GREEDY, *chosen]))


# ---------------------------------------------------------------------------------------------------------------
# the run


def run_facts(args: argparse.Namespace) -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()  # fmt: skip
    return {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cpu": cpu, "cores": os.cpu_count(),
            "load": os.getloadavg()[0], "commit": commit, "model": args.model, "slots": args.slots,
            "seed": args.seed, "limit": args.limit, "max_tokens": args.max_tokens, "samples": args.samples,
            "concurrency": args.concurrency}  # fmt: skip


async def run_thinktank(engine: Any, preset: str, model: str, problems: Sequence[Any], concurrency: int,
                        counters: Counters, max_tokens: int) -> Outcome:  # fmt: skip
    from thinktank._aio import gather_all
    from thinktank.arch import load_architecture
    from thinktank.engine.engine import Overrides
    from thinktank.version import __version__

    arch = load_architecture(preset, [model])
    overrides = Overrides(max_tokens=max_tokens)  # the peers' cap, on every call of the architecture
    outcome = Outcome(version=f"thinktank {__version__}", settings={"architecture": preset})
    limit = asyncio.Semaphore(concurrency)

    async def one(problem: Any) -> None:
        async with limit:
            started = time.perf_counter()
            ctx = engine.context(name=problem.id, use_cache=False, overrides=overrides)
            result = await arch.run(problem.input, ctx)
            outcome.seconds[problem.id] = time.perf_counter() - started
            usage = result.usage
            outcome.reported[problem.id] = {"prompt_tokens": usage.prompt_tokens,
                                            "completion_tokens": usage.completion_tokens, "calls": usage.calls}  # fmt: skip
            if result.answer is None:
                outcome.errors[problem.id] = result.error or "no answer"
            else:
                outcome.texts[problem.id] = result.answer.text

    async def work() -> None:
        await gather_all(one(p) for p in problems)

    await measured(outcome, counters, work)
    return outcome


async def grade(task: str, approach: str, problems: Sequence[Any], outcome: Outcome, run: dict[str, Any]) -> Row:
    """Extract and grade every answer with thinktank's kinds on the hidden checks: the same for every system."""
    from thinktank.eval.grading import Grader
    from thinktank.tasks.answers import extract

    if outcome.not_run is not None:
        return not_run(task, approach, outcome.not_run, run)
    grader = Grader()
    try:
        details = []
        for problem in problems:
            text = outcome.texts.get(problem.id)
            if text is None:
                verdict_passed, reason = False, outcome.errors.get(problem.id, "no answer")
            else:
                verdict = await grader.grade(problem, extract(problem.input, text))
                verdict_passed, reason = verdict.passed, verdict.reason
            details.append({"id": problem.id, "passed": verdict_passed, "reason": reason[:300],
                            "seconds": round(outcome.seconds.get(problem.id, 0.0), 2),
                            "reported": outcome.reported.get(problem.id, {})})  # fmt: skip
    finally:
        await grader.resources.aclose()
    return Row(task, approach, "ok", "", len(problems), sum(d["passed"] for d in details), outcome.prompt_tokens,
               outcome.completion_tokens, round(outcome.wall_s, 2), outcome.version, outcome.settings, details, run)  # fmt: skip


def driver_argv(args: argparse.Namespace, peer: str, approach: str, base_url: str, model: str, log: Path) -> list[str]:
    argv = ["--approach", approach, "--base-url", base_url, "--model", model, "--temperature", str(args.temperature),
            "--max-tokens", str(args.max_tokens), "--samples", str(args.samples),
            "--concurrency", str(args.concurrency)]  # fmt: skip
    if peer == "dspy":
        argv += ["--checker", f"{sys.executable} {DRIVERS / 'public_checks.py'}"]
    if peer == "optillm":
        argv += ["--proxy-log", str(log.with_suffix(".proxy.log"))]
    return argv


@dataclass
class Bench:
    """What every approach of a run shares: the options, the peers and their venvs, the engine and the server."""

    args: argparse.Namespace
    peers: dict[str, PeerSpec]
    setups: dict[str, PeerSetup]
    engine: Any
    base_url: str
    model: str
    counters: Counters
    logs: Path
    run: dict[str, Any]
    erase_slots: Callable[[], Awaitable[None]] | None = None  # every approach starts with no prompt cached

    async def cold(self) -> None:
        if self.erase_slots is not None:
            await self.erase_slots()

    async def approach(self, task: str, approach: str, problems: Sequence[Any]) -> Row:
        """One approach over one task's problems, graded; a peer that is not ready gives a "not run" row."""
        system, _, name = approach.partition(":")
        if system == "thinktank":
            await self.cold()
            outcome = await run_thinktank(self.engine, name, self.model, problems, self.args.concurrency, self.counters,
                                          self.args.max_tokens)  # fmt: skip
        elif system not in self.peers:
            outcome = Outcome(not_run=f"unknown peer {system!r}")
        elif not (setup := self.setups.get(system, PeerSetup(system, reason="its venv was not prepared"))).ready:
            outcome = Outcome(not_run=str(setup.reason))
        else:
            await self.cold()
            log = self.logs / f"{task}-{system}-{name}.log"
            argv = driver_argv(self.args, system, name, self.base_url, self.model, log)
            outcome = await run_driver(setup.python or Path(), self.peers[system].driver, argv,
                                       [p.input for p in problems], self.counters, log)  # fmt: skip
        return await grade(task, approach, problems, outcome, self.run)


def bench_server(model: str, slots: int, save_dir: Path) -> Any:
    """thinktank's `LlamaServer`, started as thinktank starts it, plus what lets every approach start cold:
    `--slot-save-path` (llama-server erases a slot's cached prompt only with it) and `--cache-ram 0` (no prompt
    cache in RAM behind the slots). Otherwise the second system on a task would find the first one's prompts cached
    and its server-counted prompt tokens would look smaller than they are."""
    from thinktank.backends.llama_server import LlamaServer

    class BenchServer(LlamaServer):
        def command(self, binary: Path, model_path: Path, draft_path: Path | None = None) -> list[str]:
            return [*super().command(binary, model_path, draft_path), "--slot-save-path", str(save_dir), "--cache-ram", "0"]

        async def erase_slots(self) -> None:
            import httpx

            root = self.base_url.removesuffix("/v1")
            async with httpx.AsyncClient(timeout=30) as client:
                for slot in range(self.slots):
                    response = await client.post(f"{root}/slots/{slot}", params={"action": "erase"})
                    response.raise_for_status()

    save_dir.mkdir(parents=True, exist_ok=True)
    return BenchServer(model, slots=slots)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--tasks", default="humaneval,spider,gsm-symbolic")
    parser.add_argument("--limit", type=int, default=40, help="problems per task: the first N of the seeded shuffle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--approaches", default="thinktank,optillm,its_hub,dspy",
                        help="comma list of system[:approach]; thinktank's approaches are presets")  # fmt: skip
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=1, help="problems in flight at once, for every system")
    parser.add_argument("--samples", type=int, default=8, help="the sampling budget peers are given (n / N / budget)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sent to peers that take one")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--peers-dir", type=Path, default=Path.home() / ".cache" / "thinktank" / "peers")
    parser.add_argument("--no-install", action="store_true", help="use existing peer venvs only")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSONL (default runs/peers/<model>-n<limit>-s<seed>.jsonl)")  # fmt: skip
    return parser


async def main(argv: Sequence[str] | None = None, peers: dict[str, PeerSpec] = PEERS) -> str:
    """Run what the results file lacks, then print and write the table (also returned)."""
    args = parser().parse_args(argv)
    from thinktank.backends.llama_server import server_metrics
    from thinktank.engine import Engine
    from thinktank.tasks.registry import load_problems

    out = args.out or Path("runs") / "peers" / f"{args.model}-n{args.limit}-s{args.seed}.jsonl"
    results = Results(out)
    approaches = parse_approaches(args.approaches, peers)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    todo = [(t, a) for t in tasks for a in approaches if (t, a) not in results.done()]
    run = run_facts(args)
    setups: dict[str, PeerSetup] = {}
    for peer in dict.fromkeys(a.partition(":")[0] for _, a in todo):
        if peer in peers:
            print(f"peer {peer}: preparing its venv under {args.peers_dir}", flush=True)
            setups[peer] = await asyncio.to_thread(ensure_peer, peers[peer], args.peers_dir, install=not args.no_install)
            print(f"peer {peer}: {setups[peer].version or 'not run: ' + str(setups[peer].reason)}", flush=True)

    if todo:
        server_ = bench_server(args.model, args.slots, out.parent / "slots")
        async with server_ as server, server.backend() as backend:

            async def counters() -> dict[str, float]:
                return await asyncio.to_thread(server_metrics, server.base_url)

            bench = Bench(args, peers, setups, Engine({server.model: backend}), server.base_url, server.model,
                          counters, out.parent / "logs", run, server.erase_slots)  # fmt: skip
            for task in dict.fromkeys(t for t, _ in todo):
                problems = load_problems(task, seed=args.seed, sample=args.limit)
                for _, approach in [item for item in todo if item[0] == task]:
                    print(f"{task} {approach}: {len(problems)} problems", flush=True)
                    row = await bench.approach(task, approach, problems)
                    results.append(row)
                    print(render_table([row]).splitlines()[-1], flush=True)
    rows = [r for key, r in results.rows().items() if key[0] in tasks and key[1] in approaches]
    table = render_table(sorted(rows, key=lambda r: (tasks.index(r.task), approaches.index(r.approach))))
    facts = f"model {args.model}, {args.slots} slots, seed {args.seed}, limit {args.limit}; {run['cpu']}; {run['date']}"
    table += "\n\n" + "\n".join(verdicts(rows))
    out.with_suffix(".md").write_text(f"{facts}\n\n{table}\n")
    print(f"\n{facts}\n\n{table}\n\nresults: {out}; table: {out.with_suffix('.md')}")
    return table


if __name__ == "__main__":
    asyncio.run(main())
