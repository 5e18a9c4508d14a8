"""Run untrusted Python (model-written programs and tests) in a throwaway sandbox, never in this process.

Example::

    sandbox = PythonSandbox(SandboxLimits(wall_s=5))
    verdict = await sandbox.check_function(solution, test_code, entry_point="add")
    verdict.passed, verdict.reason          # (False, "AssertionError at <tests> line 3: assert candidate(1, 2) == 3")

Each run is ``unshare --net --pid --mount --ipc`` + ``python -S -s -B -P -u _harness.py`` (see `_harness.py`):

- identity: the worker drops from root to a uid no other run in flight has (from ``uid_base``; no groups,
  no_new_privs), so runs cannot signal or read each other and RLIMIT_NPROC counts exactly one run's processes;
- filesystem: every mount read-only and nosuid; /tmp (= cwd, HOME, TMPDIR; also /var/tmp, /dev/shm) is a fresh
  size-capped tmpfs that disappears with the mount namespace; /root is hidden except the interpreter prefix;
- processes: private PID namespace with its own /proc, so other processes (and their environ) are invisible and
  nothing outlives the run: when the reaper (PID 1) exits or is killed, the kernel kills the whole namespace;
- no network: an empty network namespace (loopback down, no routes, no DNS); private SysV IPC;
- limits: CPU seconds, address space, file size, processes/threads, open files, no core dumps; a memory cgroup
  per run caps all its processes together where cgroup v1 allows it; the wall clock is enforced here (SIGKILL
  to the reaper) and by the reaper itself if this process dies; stdin is /dev/null; the environment is a fixed
  minimal dict (no keys or tokens); stdout/stderr keep the last `output_bytes` and the run is killed past 16x that.

What decides a pass: only records the harness writes on a dedicated pipe after the checks ran, each line prefixed
with a per-run random nonce. Exit codes and stdout never count.

Defended: sys.exit / os._exit / SystemExit / KeyboardInterrupt anywhere (no final record: fail); fake reports
on stdout; writes to guessed fds (a line without the nonce: "tampered"); patched or shadowed builtins and
AssertionError (the tests see a pristine builtins copy; changes to builtins, `math` or Counter count as
tampering); always-equal objects (the solution's callables may only hand the tests exact builtin data types,
Counter, OrderedDict, defaultdict or deque - `strict_returns=False` lifts this);
sys.settrace/setprofile (stubbed: a trace function could jump over asserts); forks of the worker wandering back
into harness code (only the worker reports); `import __main__` to patch the harness (swapped for an empty module).

NOT defended: the tests run in the candidate's process (HumanEval semantics share one namespace), so a program
written against this harness can read the nonce from harness frames (sys._getframe, gc) or poke memory with
ctypes and forge a record, or monkeypatch a stdlib module other than math that the tests call; classes a
solution defines are not wrapped. Those take deliberate attacks on this code, not the reward-hacking tricks
models produce. Outside the verdict: world-readable files stay readable (read-only), and there is no seccomp
filter (a kernel exploit escapes). Requires root, as on CI and the dev machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from thinktank.exceptions import VerificationError
from thinktank.verifiers._sandbox_process import (
    MemoryCgroup,
    SandboxLimits,
    SandboxRun,
    error_reason,
    memory_cgroup_root,
    run_sandboxed,
)
from thinktank.verifiers.base import Verdict

__all__ = ["PythonSandbox", "SandboxLimits", "SandboxRun"]

_UIDS_IN_USE: set[int] = set()  # uids of the runs in flight in this process, whichever PythonSandbox started them


class PythonSandbox:
    """A bounded pool of sandboxed Python runs (default: one per CPU). Every method is a coroutine."""

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        max_workers: int | None = None,
        *,
        python: str | None = None,
        uid_base: int = 1_500_000_000,
        strict_returns: bool = True,
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.max_workers = max_workers or os.cpu_count() or 1
        self.python = python or sys.executable
        self.uid_base = uid_base
        self.strict_returns = strict_returns
        unshare = shutil.which("unshare")
        if unshare is None:
            raise VerificationError("the Python sandbox needs util-linux `unshare` on PATH")
        self._unshare = unshare
        if os.geteuid() != 0:
            raise VerificationError("the Python sandbox needs root: each run drops to its own unprivileged uid")
        self._cgroups = memory_cgroup_root()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[int]:
        """A worker from the pool, as the uid its run will have (unique across sandboxes and, by pid, processes)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a Semaphore belongs to one event loop
            self._loop, self._sem = loop, asyncio.Semaphore(self.max_workers)
        assert self._sem is not None
        async with self._sem:
            first = self.uid_base + (os.getpid() % 65536) * 256
            uid = next((u for u in range(first, first + 256) if u not in _UIDS_IN_USE), None)
            if uid is None:
                raise VerificationError("more than 256 sandboxed runs at once in one process")
            _UIDS_IN_USE.add(uid)
            try:
                yield uid
            finally:
                _UIDS_IN_USE.discard(uid)

    async def _execute(self, mode: str, **job: Any) -> SandboxRun:
        lim = self.limits
        config = {
            "mode": mode, "strict": self.strict_returns, "offset": 0, "items": [],
            "cpu_s": math.ceil(lim.cpu_s), "memory_bytes": lim.memory_mb << 20, "file_bytes": lim.file_size_mb << 20,
            "disk_bytes": lim.disk_mb << 20, "max_procs": lim.max_procs, "deadline_s": math.ceil(lim.wall_s) + 30, **job,
        }  # fmt: skip
        async with self._slot() as uid:
            cgroup = None
            if self._cgroups is not None:
                try:
                    cgroup = MemoryCgroup(self._cgroups, f"thinktank-sandbox-{uid}", (lim.memory_mb + lim.disk_mb) << 20)
                except OSError:
                    self._cgroups = None  # not allowed here after all: rlimits only from now on
            try:
                job = config | {"uid": uid, "cgroup": str(cgroup.path) if cgroup else ""}
                return await run_sandboxed(job, lim, python=self.python, unshare=self._unshare, cgroup=cgroup)
            finally:
                if cgroup is not None:
                    cgroup.remove()

    async def run(self, source: str) -> SandboxRun:
        """Run a whole program as __main__; status "ok" means it ran to the end without an exception."""
        return await self._execute("run", source=source)

    async def check_function(self, solution: str, test_code: str, entry_point: str) -> Verdict:
        """HumanEval style: `test_code` defines check(candidate); passes only if check ran to completion."""
        run = await self._execute("check", source=solution, test_code=test_code, entry_point=entry_point)
        passed = run.status == "ok"
        details = run.details() | {key: run.done[key] for key in ("etype", "tb", "phase") if run.done and key in run.done}
        return Verdict(passed, "passed" if passed else run.reason, float(passed), details, run.duration_s)

    async def _items(self, mode: str, solution: str, items: Sequence[str], entry_point: str = "") -> tuple[list[Any], SandboxRun]:
        """Per-item records; a run that dies on item k is restarted after k (twice at most)."""
        results: list[Any] = [None] * len(items)
        start, run = 0, None
        for _ in range(3):
            job = {"source": solution, "entry_point": entry_point, "items": list(items[start:]), "offset": start}
            run = await self._execute(mode, **job)
            if run.status == "tampered":
                return [{"ok": False, "reason": run.reason}] * len(items), run
            for record in run.records:
                if record["kind"] == "item" and start <= record.get("i", -1) < len(items):
                    results[record["i"]] = record | {
                        "reason": "passed" if record.get("ok") else error_reason(record, self.limits)
                    }
            pending = [i for i in range(start, len(items)) if results[i] is None]
            if not pending or run.status == "ok":
                break
            if run.done is not None or not any(r["kind"] == "loaded" for r in run.records):
                return [r or {"ok": False, "reason": run.reason} for r in results], run  # the solution itself failed
            results[pending[0]], start = {"ok": False, "reason": run.reason}, pending[0] + 1
        assert run is not None
        return [r or {"ok": False, "reason": "not run: the sandbox stopped 3 times"} for r in results], run

    async def run_asserts(self, solution: str, asserts: Sequence[str]) -> Verdict:
        """Each assert separately; score = fraction passed; details["failures"] holds the first five failures."""
        if not asserts:
            run = await self._execute("asserts", source=solution)
            ok = run.status == "ok"
            return Verdict(ok, "no asserts; solution ran" if ok else run.reason, float(ok), run.details(), run.duration_s)
        results, run = await self._items("asserts", solution, asserts)
        passed = sum(bool(r.get("ok")) for r in results)
        failures = [
            {"index": i, "assert": asserts[i], "error": r["reason"], "traceback": r.get("tb", "")}
            for i, r in enumerate(results)
            if not r.get("ok")
        ]
        reason = f"passed {passed}/{len(asserts)} asserts"
        if failures:
            reason += f"; first failure: {failures[0]['error']}"
        details = run.details() | {"failures": failures[:5], "results": [bool(r.get("ok")) for r in results]}
        return Verdict(passed == len(asserts), reason, passed / len(asserts), details, run.duration_s)

    async def call_outputs(self, solution: str, entry_point: str, inputs: Sequence[str]) -> list[str | None]:
        """repr(entry_point(*args)) per argument-list source ("[1, 2], 3"); None on error or timeout."""
        if not inputs:
            return []
        results, _ = await self._items("outputs", solution, inputs, entry_point)
        return [r.get("out") if r.get("ok") else None for r in results]
