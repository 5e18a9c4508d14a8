"""Spawning one sandboxed run and reading what happened (the host side; `_harness.py` is the inside).

The job travels as marshal bytes on a pipe, the harness's report comes back on another, and the reaper's
exit-status line on a third; stdout/stderr are drained into bounded tails. `run_sandboxed` returns a
`SandboxRun` whose status and reason come only from the authenticated report, the reaper's status line and
what this side did (timeouts, output kills), never from the exit code of `unshare` itself.
"""

from __future__ import annotations

import ast
import asyncio
import atexit
import contextlib
import fcntl
import marshal
import math
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from thinktank.exceptions import ConfigError, VerificationError

Status = Literal["ok", "error", "timeout", "killed", "memory", "output_limit", "exited", "tampered"]
_HARNESS = str(Path(__file__).with_name("_harness.py"))
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}
ENV |= {"PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"}  # fixed seed: set reprs compare across runs
NAMESPACES = ("--net", "--pid", "--mount", "--ipc", "--fork", "--kill-child", "--mount-proc")
ROOTLESS = ("--user", "--map-current-user", "--keep-caps")  # without root: the user's own user namespace first
_MAX_CONFIG = 16 << 20
_MAX_REPORT = 16 << 20
_KINDS = ("loaded", "item", "done")


@dataclass(frozen=True)
class SandboxLimits:
    cpu_s: float = 5.0
    wall_s: float = 10.0
    memory_mb: int = 512
    file_size_mb: int = 16
    disk_mb: int = 64  # the private /tmp
    max_procs: int = 32  # processes + threads
    output_bytes: int = 64 * 1024  # tail kept per stream

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ConfigError(f"SandboxLimits.{name} must be > 0, got {value!r}")


@dataclass
class SandboxRun:
    """What one sandboxed process did. `records` are the harness's authenticated report lines."""

    status: Status
    reason: str
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_s: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)
    memory_cap: str = "rlimit"  # "cgroup-v1" / "cgroup-v2": all the run's processes together; "rlimit": each alone

    @property
    def done(self) -> dict[str, Any] | None:
        return self.records[-1] if self.records and self.records[-1].get("kind") == "done" else None

    def details(self) -> dict[str, Any]:
        keys = ("status", "exit_code", "signal", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "memory_cap")
        return {key: getattr(self, key) for key in keys}


class _Tail:
    """The last `keep` bytes of a stream, and how many bytes went by."""

    def __init__(self, keep: int) -> None:
        self.keep, self.total, self.buf = keep, 0, bytearray()

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buf += chunk
        if len(self.buf) > 2 * self.keep:
            del self.buf[: -self.keep]

    def text(self) -> str:
        return bytes(self.buf[-self.keep :]).decode("utf-8", "replace")


async def _drain(reader: asyncio.StreamReader, tail: _Tail, check: Callable[[], None]) -> None:
    while chunk := await reader.read(1 << 16):
        tail.add(chunk)
        check()


async def _pipe_reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    return reader, transport


def _kill_sandbox(pid: int) -> None:
    """SIGKILL the reaper (PID 1 inside), so that `unshare` reaps it only once the namespace is empty.

    Killing `unshare` first would let us reap it while the orphaned reaper is still tearing the namespace down;
    the process group is the fallback if the reaper is not there (yet).
    """
    reapers = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.isdigit() and int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                reapers.append(int(entry))
    with contextlib.suppress(ProcessLookupError):
        for target in reapers:
            os.kill(target, signal.SIGKILL)
        if not reapers:
            os.killpg(pid, signal.SIGKILL)


async def _group_gone(pgid: int, patience_s: float = 5.0) -> None:
    """After a kill, wait until no process of the run's group is left (bounded, in case the pgid got reused)."""
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.005)


def _parse_report(data: bytes, nonce: str, complete: bool) -> tuple[list[dict[str, Any]], str]:
    """Validated records and, if anything is off, why the report channel counts as tampered."""
    prefix, records = f"{nonce} ".encode(), list[dict[str, Any]]()
    lines = data.split(b"\n")
    if lines[-1] and complete:
        return records, "report channel tampered: unterminated record"
    for line in lines[:-1]:
        if not line.startswith(prefix):
            return records, "report channel tampered: unauthenticated record"
        try:
            record = ast.literal_eval(line[len(prefix) :].decode())
        except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
            return records, "report channel tampered: unreadable record"
        if not isinstance(record, dict) or record.get("kind") not in _KINDS or (records and records[-1]["kind"] == "done"):
            return records, "report channel tampered: unexpected record"
        records.append(record)
    return records, ""


def error_reason(record: dict[str, Any], limits: SandboxLimits) -> str:
    etype, msg, where = record.get("etype", "Error"), record.get("msg", ""), record.get("where", "")
    if etype == "MemoryError":
        return f"memory limit ({limits.memory_mb} MB)"
    return (f"{etype}: {msg}" if msg else f"{etype} at {where}" if where else etype)[:500]


@dataclass(frozen=True)
class CgroupParent:
    """The cgroup under which each run gets its own memory cgroup, and which cgroup version it belongs to."""

    path: Path
    version: Literal[1, 2]

    @property
    def kind(self) -> str:
        return f"cgroup-v{self.version}"


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK) and os.access(directory / "cgroup.procs", os.W_OK)


def _words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def v1_memory_parent(proc_cgroup: str, mount: Path = Path("/sys/fs/cgroup/memory")) -> CgroupParent | None:
    """Our own cgroup-v1 memory cgroup, if we may create children in it (root, or delegated to us by chown)."""
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            root = mount / path.lstrip("/")
            return CgroupParent(root, 1) if _writable(root) else None
    return None


def v2_memory_parent(proc_cgroup: str, mount: Path, mount_root: str = "/") -> CgroupParent | None:
    """The nearest cgroup-v2 cgroup, ours or above it, whose children get the memory controller and that we may
    create children in and move processes into (root; or a subtree delegated to this user).

    The kernel keeps processes out of cgroups that enable controllers for their children, so our own cgroup
    qualifies only at the root of the hierarchy (which may hold processes; we enable memory there ourselves).
    Otherwise it is the nearest ancestor that enables memory for its children and is writable: as root usually
    our parent (the runs become siblings of our cgroup), for an ordinary user a subtree delegated to them.
    """
    own = next((line[3:] for line in proc_cgroup.splitlines() if line.startswith("0::")), None)
    if own is None or not (own == mount_root or own.startswith(mount_root.rstrip("/") + "/")):
        return None
    top = mount.resolve()
    here = (top / os.path.relpath(own, mount_root)).resolve()
    if here != top and top not in here.parents:
        return None
    if here == top and "memory" in _words(top / "cgroup.controllers") and _writable(top):
        with contextlib.suppress(OSError):
            if "memory" not in _words(top / "cgroup.subtree_control"):
                (top / "cgroup.subtree_control").write_text("+memory")
            return CgroupParent(top, 2)
    for directory in (here, *here.parents):
        available = "memory" in _words(directory / "cgroup.controllers")
        if available and "memory" in _words(directory / "cgroup.subtree_control") and _writable(directory):
            return CgroupParent(directory, 2)
        if directory == top:
            break
    return None


def _cgroup2_mount(mountinfo: str) -> tuple[Path, str] | None:
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " in line and line.split(" - ", 1)[1].split()[0] == "cgroup2":
            return Path(fields[4]), fields[3]
    return None


def memory_cgroup_root() -> CgroupParent | None:
    """Where each run gets a memory cgroup capping all its processes together: cgroup v1 where our own memory
    cgroup is writable (as before), else cgroup v2 (see `v2_memory_parent`), else None - then only the
    per-process rlimits apply (max_procs x memory_mb in the worst case).
    """
    with contextlib.suppress(OSError, ValueError):
        proc_cgroup = Path("/proc/self/cgroup").read_text()
        found = v1_memory_parent(proc_cgroup)
        if found is None and (mount := _cgroup2_mount(Path("/proc/self/mountinfo").read_text())):
            found = v2_memory_parent(proc_cgroup, *mount)
        return found
    return None


_BUSY_CGROUPS: set[Path] = set()  # cgroups of cancelled runs, removed once their processes are gone


def _remove_busy_cgroups() -> None:
    for path in list(_BUSY_CGROUPS):
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            continue
        _BUSY_CGROUPS.discard(path)


atexit.register(_remove_busy_cgroups)


class MemoryCgroup:
    """One run's memory cgroup: created before the run, read for OOM kills and removed after it."""

    def __init__(self, parent: CgroupParent, name: str, limit_bytes: int) -> None:
        self.path, self.version, self.kind = parent.path / name, parent.version, parent.kind
        _BUSY_CGROUPS.discard(self.path)  # a name is only reused once no run in flight has it: ours now
        _remove_busy_cgroups()
        self.path.mkdir(exist_ok=True)
        try:
            if self.version == 1:
                (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
                if (self.path / "memory.memsw.limit_in_bytes").exists():
                    (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))  # no swapping around it
            else:
                (self.path / "memory.max").write_text(str(limit_bytes))
                if (self.path / "memory.swap.max").exists():
                    (self.path / "memory.swap.max").write_text("0")
        except OSError:
            self.remove()
            raise

    def oom_kills(self) -> int:
        events = "memory.oom_control" if self.version == 1 else "memory.events"
        with contextlib.suppress(OSError, ValueError, StopIteration):
            lines = (self.path / events).read_text().splitlines()
            return int(next(line for line in lines if line.startswith("oom_kill ")).split()[1])
        return 0

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:  # a cancelled run's processes may still be dying: retried before the next run and at exit
            _BUSY_CGROUPS.add(self.path)


async def run_sandboxed(
    config: dict[str, Any],
    limits: SandboxLimits,
    *,
    python: str,
    unshare: str,
    cgroup: MemoryCgroup | None,
    rootless: bool = False,
) -> SandboxRun:
    """One harness run under fresh namespaces: hand over the job, drain every pipe, enforce wall and output limits.

    The spawn is a plain synchronous fork+exec and the exit is awaited on a pidfd: asyncio's subprocess machinery
    can hang for good when its tasks are cancelled mid-spawn (CPython 3.11, e.g. asyncio.run shutting down).
    """
    lim, nonce = limits, secrets.token_hex(16)
    cfg_r, cfg_w = os.pipe()
    rep_r, rep_w = os.pipe()
    st_r, st_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    child_ends = (cfg_r, rep_w, st_w)
    try:
        payload = marshal.dumps(config | {"nonce": nonce, "report_fd": rep_w, "status_fd": st_w})
        if len(payload) > _MAX_CONFIG:
            raise VerificationError(f"program too large for the sandbox ({len(payload)} bytes)")
        fcntl.fcntl(cfg_w, fcntl.F_SETPIPE_SZ, max(len(payload), 1 << 16))
        os.set_blocking(cfg_w, False)
        if os.write(cfg_w, payload) != len(payload):  # the enlarged pipe holds the whole job: no writer task
            raise VerificationError("could not hand the job to the sandbox")
        proc = subprocess.Popen(
            [unshare, *(ROOTLESS if rootless else ()), *NAMESPACES, python, "-S", "-s", "-B", "-P", "-u", _HARNESS, str(cfg_r)],
            stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, pass_fds=child_ends, env=ENV, cwd="/",
            start_new_session=True,
        )  # fmt: skip
    except BaseException as exc:
        for fd in (rep_r, st_r, out_r, err_r):
            os.close(fd)
        if isinstance(exc, OSError):
            raise VerificationError(f"could not start the sandbox: {exc}") from exc
        raise
    finally:
        for fd in (*child_ends, cfg_w, out_w, err_w):
            os.close(fd)
    start = time.monotonic()
    killed_for = ""

    def kill(why: str) -> None:
        nonlocal killed_for
        killed_for = killed_for or why
        if proc.returncode is None:  # once reaped, the pid could belong to someone else
            _kill_sandbox(proc.pid)

    out, err, report, status = _Tail(lim.output_bytes), _Tail(lim.output_bytes), _Tail(_MAX_REPORT), _Tail(4096)

    def check_output() -> None:
        if out.total + err.total > 16 * lim.output_bytes:
            kill("output")
        if report.total > _MAX_REPORT:
            kill("report")

    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    pidfd = os.pidfd_open(proc.pid)  # not reaped yet, so it is our child's
    loop.add_reader(pidfd, on_exit)
    tasks: list[asyncio.Future[None]] = []
    transports: list[asyncio.BaseTransport] = []
    fds = [out_r, err_r, rep_r, st_r]
    try:
        streams = []
        while fds:
            reader, transport = await _pipe_reader(fds.pop(0))
            transports.append(transport)
            streams.append(reader)
        tails = ((out, check_output), (err, check_output), (report, check_output), (status, lambda: None))
        tasks = [asyncio.ensure_future(_drain(reader, *tail)) for reader, tail in zip(streams, tails, strict=True)]
        await asyncio.wait([exited], timeout=lim.wall_s)
        if not exited.done():
            kill("timeout")
            await exited
        proc.wait()  # it has exited: this only reaps it
        if killed_for:
            await _group_gone(proc.pid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks), 10)  # EOF once the namespace is gone
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if proc.returncode is None:  # cancelled: take the namespace down with us (`subprocess` reaps it later)
            _kill_sandbox(proc.pid)
        for fd in fds:
            os.close(fd)
        for task in tasks:
            task.cancel()
        for transport in transports:
            transport.close()
    run = SandboxRun("ok", "", duration_s=time.monotonic() - start, stdout=out.text(), stderr=err.text())
    run.memory_cap = cgroup.kind if cgroup else "rlimit"
    run.stdout_truncated, run.stderr_truncated = out.total > lim.output_bytes, err.total > lim.output_bytes
    oom = cgroup.oom_kills() if cgroup else 0
    _classify(run, lim, killed_for, bytes(report.buf), nonce, status.text(), oom)
    return run


def _classify(
    run: SandboxRun, lim: SandboxLimits, killed_for: str, report: bytes, nonce: str, status_line: str, oom: int
) -> None:
    """Fill status and reason from what the harness reported, how the worker ended, and what we did."""
    if status_line.startswith("setup "):  # the harness or the worker could not confine the run: nothing ran
        raise VerificationError(f"sandbox setup failed: {status_line.splitlines()[0][6:]}")
    status = status_line.split()
    if len(status) == 3:
        value = int(status[1])
        run.signal, run.exit_code = (value, None) if status[0] == "signal" else (None, value)
    run.records, tampered = _parse_report(report, nonce, complete=not killed_for)
    cpu = float(status[2]) if len(status) == 3 else 0.0
    done = run.done
    if killed_for == "output":
        run.status, run.reason = "output_limit", f"output limit exceeded ({16 * lim.output_bytes} bytes)"
    elif tampered or killed_for == "report":
        run.status, run.reason = "tampered", tampered or "report channel flooded"
    elif killed_for == "timeout":
        run.status, run.reason = "timeout", f"timeout after {lim.wall_s:g}s (wall)"
    elif done is not None and done.get("ok"):
        run.status, run.reason = "ok", "completed"
    elif oom:
        run.status, run.reason = "memory", f"memory limit ({lim.memory_mb} MB, all processes together)"
    elif done is not None:
        run.status = "tampered" if done.get("phase") == "tamper" else "memory" if done.get("etype") == "MemoryError" else "error"
        run.reason = error_reason(done, lim)
    elif run.signal == signal.SIGXCPU or (run.signal == signal.SIGKILL and cpu >= math.ceil(lim.cpu_s)):
        run.status, run.reason = "timeout", f"CPU time limit ({math.ceil(lim.cpu_s)}s)"
    elif run.signal is not None:
        name = signal.Signals(run.signal).name if run.signal in signal.valid_signals() else "?"
        run.status, run.reason = "killed", f"killed by signal {run.signal} ({name})"
    elif run.exit_code is not None:
        memory = "MemoryError" in run.stderr[-2000:]
        run.status = "memory" if memory else "exited"
        run.reason = (
            f"memory limit ({lim.memory_mb} MB)" if memory else f"process exited before reporting (exit code {run.exit_code})"
        )
    elif killed_for:
        run.status, run.reason = "killed", "sandbox killed before reporting"
    else:  # the reaper always reports unless killed, and the candidate cannot kill it (other uid, or signals blocked)
        raise VerificationError(f"the sandbox did not start: {run.stderr.strip()[-500:] or 'no output'}")
