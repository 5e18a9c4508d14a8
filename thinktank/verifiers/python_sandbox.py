"""Run untrusted Python (model-written programs and tests) in a throwaway sandbox, never in this process.

Example::

    sandbox = PythonSandbox(SandboxLimits(wall_s=5))
    verdict = await sandbox.check_function(solution, test_code, entry_point="add")
    verdict.passed, verdict.reason          # (False, "AssertionError at <tests> line 3: assert candidate(1, 2) == 3")

Each run is ``unshare --net --pid --mount --ipc`` + ``python -S -s -B -P -u _harness.py`` (see `_harness.py`), in
one of two modes, picked by who we are:

- root mode (euid 0): the worker drops from root to a uid no other run in flight has (from ``uid_base``; no
  groups), so runs cannot signal or read each other and RLIMIT_NPROC counts exactly one run's processes;
- rootless mode (anyone else): ``unshare --user --map-current-user --keep-caps`` first, so the harness is the
  invoking user with capabilities inside its own user namespace only; the worker then drops every capability
  (effective, permitted, inheritable, ambient and the bounding set; checked, or the run does not start). There is
  only one uid, so runs are kept apart by their PID, mount and IPC namespaces instead (a run sees no other
  process; RLIMIT_NPROC counts per user namespace, i.e. per run, the reaper included). Needs unprivileged user
  namespaces, probed once: without them (e.g. ``kernel.apparmor_restrict_unprivileged_userns=1``,
  ``user.max_user_namespaces=0``) a VerificationError names the sysctl to change. There is no unsandboxed fallback.

In both modes, for every run:

- identity: no_new_privs; its own session (a killpg reaches only the run); a fresh, empty session keyring;
- filesystem: every mount read-only and nosuid; /tmp (= cwd, HOME, TMPDIR; also /var/tmp, /dev/shm) is a fresh
  size-capped tmpfs that disappears with the mount namespace; /run (sockets of system services) and ``hide``
  are empty; so are, in rootless mode, the user's home ($HOME and the passwd entry's), and, in both, the first
  directory above the interpreter that others cannot enter; the interpreter's prefix, if under one of those,
  is put back read-only;
- processes: private PID namespace with its own /proc, so other processes (and their environ) are invisible and
  nothing outlives the run: when the reaper (PID 1) exits or is killed, the kernel kills the whole namespace; the
  reaper blocks every signal and is not dumpable, so a worker of the same uid can neither stop nor read it;
- no network: an empty network namespace (loopback down, no routes, no DNS, no abstract unix sockets); private
  SysV IPC;
- limits: CPU seconds, address space, file size, processes/threads, open files, no core dumps; a memory cgroup
  per run caps all its processes together where one can be made (cgroup v1 where our memory cgroup is writable,
  else a cgroup-v2 subtree that enables memory and is ours to write, see `memory_cgroup_root`), otherwise only
  the per-process RLIMIT_AS applies; details["memory_cap"] says which ("cgroup-v1" / "cgroup-v2" / "rlimit");
  the wall clock is enforced here (SIGKILL to the reaper, which takes the namespace down) and by the reaper
  itself if this process dies; stdin is /dev/null; the environment is a fixed minimal dict (no keys or tokens);
  stdout/stderr keep the last `output_bytes` and the run is killed past 16x that.

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
models produce. Outside the verdict: there is no seccomp filter (a kernel exploit escapes; so might a bug in
user namespaces, which rootless mode relies on and which a run can also create for itself). Root mode: files and
devices readable by everyone stay readable (read-only). Rootless mode, where the run *is* the user: whatever
the user can read outside the hidden directories stays readable, e.g. a project checkout outside $HOME (pass it
in ``hide``), and the user's supplementary groups stay in force (an unprivileged user namespace cannot drop
them), e.g. /var/log for adm; the user's kernel keys are listed in /proc/keys (descriptions only: by default
only their possessor may read them, and the run does not possess them); the reaper counts against max_procs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from thinktank.exceptions import VerificationError
from thinktank.verifiers._sandbox_process import (
    ENV,
    NAMESPACES,
    ROOTLESS,
    MemoryCgroup,
    SandboxLimits,
    SandboxRun,
    error_reason,
    memory_cgroup_root,
    run_sandboxed,
)
from thinktank.verifiers._uid_leases import UidLeases
from thinktank.verifiers.base import Verdict

__all__ = ["HiddenTests", "PythonSandbox", "SandboxCall", "SandboxLimits", "SandboxProbe", "SandboxRun", "sandbox_mode"]

# (sysctl file under /proc/sys, the value that forbids unprivileged user namespaces, the setting that allows them)
_USERNS_SWITCHES = (
    ("kernel/apparmor_restrict_unprivileged_userns", "1", "kernel.apparmor_restrict_unprivileged_userns=0"),
    ("user/max_user_namespaces", "0", "user.max_user_namespaces=15000"),
    ("kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone=1"),
)


@functools.cache
def userns_probe(unshare: str) -> str:
    """Empty if this user can build a rootless sandbox's namespaces, else why not. Probed once per process."""
    try:
        probe = subprocess.run(
            [unshare, *ROOTLESS, *NAMESPACES, "true"],
            stdin=subprocess.DEVNULL, capture_output=True, env=ENV, cwd="/", timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if probe.returncode == 0:
        return ""
    return probe.stderr.decode(errors="replace").strip()[-500:] or f"exit code {probe.returncode}"


def _sysctl(name: str, proc_sys: Path = Path("/proc/sys")) -> str | None:
    try:
        return (proc_sys / name).read_text().strip()
    except OSError:
        return None


def userns_fix() -> str:
    """How to allow unprivileged user namespaces here, naming the sysctl that is set against them when there is one."""
    culprits = [fix for name, bad, fix in _USERNS_SWITCHES if _sysctl(name) == bad]
    fixes = " and ".join(f"`sudo sysctl -w {fix}`" for fix in culprits) or "enabling unprivileged user namespaces " + (
        "(" + ", ".join(f"`{fix}`" for _, _, fix in _USERNS_SWITCHES) + ", whichever this kernel has)"
    )
    return f"{fixes} (persist it in /etc/sysctl.d/), or run as root"


def userns_error(problem: str) -> VerificationError:
    """What to enable, naming the sysctl that is set against it when there is one."""
    return VerificationError(
        "the Python sandbox needs root or unprivileged user namespaces, and this user cannot create them: "
        f"`unshare {' '.join(ROOTLESS + NAMESPACES)} true` failed ({problem}). Fix: {userns_fix()}. "
        "Generated code is never run without the sandbox."
    )


@dataclass(frozen=True)
class SandboxProbe:
    """The mode a `PythonSandbox` made now would run in, or (mode None) why none can run here and the fix."""

    mode: Literal["root", "rootless"] | None
    problem: str = ""
    fix: str = ""


def sandbox_mode(unshare: str | None = None) -> SandboxProbe:
    """Which sandbox mode this process gets (root by euid, else rootless if user namespaces work); for `doctor`
    and `PythonSandbox` alike, so the two never disagree."""
    unshare = unshare or shutil.which("unshare")
    if unshare is None:
        return SandboxProbe(
            None, "util-linux `unshare` is not on PATH", "install util-linux (Debian: apt-get install util-linux)"
        )
    if os.geteuid() == 0:
        return SandboxProbe("root")
    if problem := userns_probe(unshare):
        return SandboxProbe(None, problem, userns_fix())
    return SandboxProbe("rootless")


def _homes() -> list[str]:
    """The invoking user's home directories (passwd entry and $HOME): hidden from rootless runs."""
    homes = [os.environ.get("HOME", "")]
    with contextlib.suppress(KeyError):
        homes.append(pwd.getpwuid(os.getuid()).pw_dir)
    return sorted({home for home in homes if home.startswith("/") and home.rstrip("/")})


@dataclass(frozen=True)
class HiddenTests:
    """What `PythonSandbox.check` grades against: HumanEval-style `test_code` defining check(candidate)."""

    test_code: str
    entry_point: str


@dataclass(frozen=True)
class SandboxCall:
    """One call of a program's function (`PythonSandbox.call`): repr of what it returned, or why there is none.

    `status` is "ok" (it returned; `out` is the repr), "error" (it or the program raised: `reason`, `traceback`),
    or the run's status when the run ended first ("timeout", "memory", "killed", "output_limit", "tampered", ...).
    `stdout` is what the program printed (top level and call alike).
    """

    status: str
    out: str | None
    reason: str
    stdout: str = ""
    traceback: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class PythonSandbox:
    """A bounded pool of sandboxed Python runs (default: one per CPU). Every method is a coroutine.

    `mode` is "root" or "rootless" (see the module docstring); `hide` adds directories every run sees as empty,
    e.g. a checkout outside $HOME in rootless mode; `python` is the interpreter of the runs (the runs' user must
    be able to read its prefix; directories above it that this user cannot enter are hidden, the prefix put back).
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        max_workers: int | None = None,
        *,
        python: str | None = None,
        uid_base: int = 1_500_000_000,
        strict_returns: bool = True,
        hide: Sequence[str] = (),
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.max_workers = max_workers or os.cpu_count() or 1
        self.python = python or sys.executable
        self.uid_base = uid_base
        self._uids = UidLeases(uid_base)
        self.strict_returns = strict_returns
        unshare = shutil.which("unshare")
        if unshare is None:
            raise VerificationError("the Python sandbox needs util-linux `unshare` on PATH")
        self._unshare = unshare
        probe = sandbox_mode(unshare)
        if probe.mode is None:
            raise userns_error(probe.problem)
        self.mode: Literal["root", "rootless"] = probe.mode
        self.hide = ["/run", *(_homes() if self.mode == "rootless" else ()), *hide]
        self._cgroups = memory_cgroup_root()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[int]:
        """A worker from the pool, as the uid its run will have in root mode (leased: no other run in flight, in any
        process, has it); it also names the run's memory cgroup."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a Semaphore belongs to one event loop
            self._loop, self._sem = loop, asyncio.Semaphore(self.max_workers)
        assert self._sem is not None
        async with self._sem:
            with self._uids.lease() as uid:
                yield uid

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
            rootless = self.mode == "rootless"
            ids = {"uid": os.getuid(), "gid": os.getgid()} if rootless else {"uid": uid, "gid": uid}
            try:
                job = config | ids | {"rootless": rootless, "hide": self.hide, "cgroup": str(cgroup.path) if cgroup else ""}
                return await run_sandboxed(job, lim, python=self.python, unshare=self._unshare, cgroup=cgroup, rootless=rootless)
            finally:
                if cgroup is not None:
                    cgroup.remove()

    async def run(self, source: str) -> SandboxRun:
        """Run a whole program as __main__; status "ok" means it ran to the end without an exception."""
        return await self._execute("run", source=source)

    async def check(self, answer: str, reference: HiddenTests) -> Verdict:
        """The `Verifier` method: `check_function` with the reference's test code."""
        return await self.check_function(answer, reference.test_code, reference.entry_point)

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

    async def call(self, solution: str, entry_point: str, args: str = "") -> SandboxCall:
        """Run `solution` and call `entry_point(args)` once (`args` is an argument-list source such as "1, k=2")."""
        run = await self._execute("outputs", source=solution, entry_point=entry_point, items=[args])
        if run.status == "tampered":
            return SandboxCall("tampered", None, run.reason, run.stdout, duration_s=run.duration_s)
        item = next((r for r in run.records if r["kind"] == "item" and r.get("i") == 0), None)
        if item is not None and item.get("ok"):
            return SandboxCall("ok", item.get("out"), "returned", run.stdout, duration_s=run.duration_s)
        failed = item if item is not None else run.done  # the call raised, or the program did before the call
        if failed is not None and not failed.get("ok"):
            status = "memory" if failed.get("etype") == "MemoryError" else "error"
            return SandboxCall(status, None, error_reason(failed, self.limits), run.stdout, failed.get("tb", ""), run.duration_s)
        status = run.status if run.status != "ok" else "error"  # the run ended before the call reported
        return SandboxCall(status, None, run.reason or "no result reported", run.stdout, duration_s=run.duration_s)

    async def call_outputs(self, solution: str, entry_point: str, inputs: Sequence[str]) -> list[str | None]:
        """repr(entry_point(*args)) per argument-list source ("[1, 2], 3"); None on error or timeout."""
        if not inputs:
            return []
        results, _ = await self._items("outputs", solution, inputs, entry_point)
        return [r.get("out") if r.get("ok") else None for r in results]
