"""Hostile candidate programs: each must be contained AND get the right verdict with a readable reason.

All cases run once, concurrently, in a module fixture (the pool is part of what is tested); each test then checks
its own result plus the host-side evidence (files, processes, the loopback listener) after everything ran.

Both sandbox modes: `root` runs here when we are root; `rootless` runs here when we are not, and, when we are
root, in a pytest of these same modules run as an unprivileged user (`unprivileged.py`). That run makes the
host-side checks as that user; its results then come back here, where every check runs again as root (files
under /root, processes of every uid) and each case also needs the unprivileged run's own test to have passed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from thinktank.verifiers._sandbox_process import memory_cgroup_root
from thinktank.verifiers.base import Verdict
from thinktank.verifiers.python_sandbox import PythonSandbox, SandboxLimits, SandboxRun

from . import unprivileged
from .sandbox_procs import own_uids, per_process_uid_base, pids_with_uid_in

SEED = os.environ.get("THINKTANK_HOSTILE_SEED") or uuid.uuid4().hex + uuid.uuid4().hex  # shared with the child run
MARK = SEED[:12]
SECRET = f"sk-test-{SEED[32:]}"
SLEEP_MARK = f"987.{int(MARK, 16) % 10**9:09d}"  # a `sleep` argument no other process on the host has
PROJECT = Path(__file__).resolve().parents[2]
LIMITS = SandboxLimits(cpu_s=1, wall_s=3, memory_mb=256, file_size_mb=8, disk_mb=16, max_procs=16, output_bytes=16 * 1024)

UID_BASE = per_process_uid_base(1_600_000_000)
TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9\n"
WRONG = "def add(a, b):\n    return a - b\n"
RIGHT = "def add(a, b):\n    return a + b\n"


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    expect: str  # "pass" / "fail" for check cases (solution + TEST); a SandboxRun status (or "a|b") for run cases
    reason: str  # regex the reason must match
    mode: str = "check"
    after: Callable[[str], None] | None = None  # host-side containment check, gets the captured stdout
    rootless: tuple[str, str] | None = None  # (expect, reason) where rootless mode differs, harmlessly
    needs_cgroup: bool = False  # only a memory cgroup can contain it (skipped where the cap is per process)


def absent(*paths: str) -> Callable[[str], None]:
    def check(stdout: str) -> None:
        for path in paths:
            assert not os.path.exists(path), f"{path} leaked out of the sandbox"

    return check


def printed(*needles: str) -> Callable[[str], None]:
    def check(stdout: str) -> None:
        for needle in needles:
            assert needle in stdout

    return check


def no_secret(stdout: str) -> None:
    assert "PATH" in stdout  # the program did print an environment
    assert SECRET not in stdout and "THINKTANK_TEST_SECRET" not in stdout


def only_own_processes(stdout: str) -> None:
    assert SECRET not in stdout
    assert int(stdout.split("visible=")[1].split()[0]) <= 2  # the reaper (PID 1) and the program itself


def no_sleeper(stdout: str) -> None:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        assert SLEEP_MARK.encode() not in cmdline, f"grandchild {pid} survived: {cmdline!r}"


def _no_root_keys(stdout: str) -> None:
    assert "_ses" in stdout and "_uid.0" not in stdout and "_uid_ses.0" not in stdout  # a fresh, empty session keyring


def oom_killed(stdout: str) -> None:
    assert "-9" in stdout.split("codes")[1], "six 200 MB children fitted into a 272 MB cgroup?"


def secret_not_printed(stdout: str) -> None:
    assert SECRET not in stdout


ALWAYS_EQUAL = "class Eq:\n    def __eq__(self, other):\n        return True\n    def __sub__(self, o):\n        return 0\n"
CASES = [
    # resource abuse
    Case("fork_bomb", "import os\nwhile True:\n    os.fork()\n", "error|timeout", r"BlockingIOError|timeout|CPU time", "run"),
    Case(
        "infinite_loop",
        "def add(a, b):\n    while True:\n        pass\n",
        "fail",
        r"CPU time limit \(1s\)|timeout after 3s \(wall\)",
    ),
    Case(
        "busy_thread",
        "import threading\ndef spin():\n    while True:\n        pass\ndef add(a, b):\n"
        "    t = threading.Thread(target=spin)\n    t.start()\n    t.join()\n",
        "fail",
        r"CPU time limit|timeout after",
    ),
    Case("sleep_forever", "import time\ndef add(a, b):\n    time.sleep(3600)\n", "fail", r"^timeout after 3s \(wall\)$"),
    Case("memory_hog_block", "x = bytearray(10**10)\n", "memory", r"^memory limit \(256 MB\)$", "run"),
    Case(
        "memory_hog_growing",
        "x = []\nwhile True:\n    x.append(bytearray(10**6))\n",
        "memory",
        r"^memory limit \(256 MB\)$",
        "run",
    ),
    Case(
        "forked_memory_hogs",
        "import os, time\npids = []\nfor _ in range(6):\n    pid = os.fork()\n    if pid == 0:\n"
        "        x = b'1' * (200 << 20)\n        time.sleep(0.5)\n        os._exit(0)\n    pids.append(pid)\n"
        "print('codes', [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids])\n",
        "ok",
        r"^completed$",
        "run",
        oom_killed,
        needs_cgroup=True,
    ),
    Case("deep_recursion", "def add(a, b):\n    return add(a, b)\n", "fail", r"^RecursionError: maximum recursion depth"),
    Case(
        "deep_recursion_no_limit",
        "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1) + 1\nf(0)\n",
        "killed|memory|timeout",
        r"killed by signal 11 \(SIGSEGV\)|memory limit|CPU time limit|timeout after",
        "run",
    ),
    Case(
        "huge_stdout", "while True:\n    print('x' * 1000)\n", "output_limit", r"^output limit exceeded \(262144 bytes\)$", "run"
    ),
    Case(
        "huge_stderr",
        "import sys\nwhile True:\n    sys.stderr.write('e' * 4096)\n",
        "output_limit",
        r"^output limit exceeded",
        "run",
    ),
    Case(
        "huge_single_write", "import sys\nsys.stdout.write('y' * 50_000_000)\n", "output_limit", r"^output limit exceeded", "run"
    ),
    Case("huge_file", "with open('big', 'wb') as f:\n    f.write(b'0' * (64 << 20))\n", "error", r"File too large", "run"),
    Case(
        "fill_disk",
        "for i in range(100):\n    open(f'f{i}', 'wb').write(b'0' * (4 << 20))\n",
        "error",
        r"No space left on device",
        "run",
    ),
    Case(
        "many_threads",
        "import threading, time\nfor _ in range(200):\n    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n",
        "error",
        r"can't start new thread",
        "run",
    ),
    Case("ctypes_segfault", "import ctypes\nctypes.string_at(0)\n", "killed", r"^killed by signal 11 \(SIGSEGV\)$", "run"),
    Case(
        "slow_import", "import time\ntime.sleep(60)\ndef add(a, b):\n    return a + b\n", "fail", r"^timeout after 3s \(wall\)$"
    ),
    Case("stdin_read", "input()\n", "error", r"^EOFError", "run"),
    # filesystem
    Case(
        "write_tmp",
        f"for d in ('/tmp', '/var/tmp', '/dev/shm'):\n    open(f'{{d}}/x-{MARK}', 'w').write('leak')\nprint('wrote')\n",
        "ok",
        r"^completed$",
        "run",
        absent(f"/tmp/x-{MARK}", f"/var/tmp/x-{MARK}", f"/dev/shm/x-{MARK}"),
    ),
    Case(
        "write_root",
        f"open('/root/x-{MARK}', 'w')\n",
        "error",
        r"PermissionError|Read-only file system",
        "run",
        absent(f"/root/x-{MARK}"),
    ),
    Case(
        "write_project",
        f"open('{PROJECT}/x-{MARK}', 'w')\n",
        "error",
        # a checkout under /tmp is hidden behind the run's own tmpfs; anywhere else it is mounted read-only
        r"Read-only file system|No such file or directory",
        "run",
        absent(f"{PROJECT}/x-{MARK}"),
    ),
    Case(
        "append_etc_passwd",
        "open('/etc/passwd', 'a').write('evil::0:0::/:/bin/sh\\n')\n",
        "error",
        r"Read-only file system|Permission",
        "run",
    ),
    Case("read_shadow", "print(open('/etc/shadow').read())\n", "error", r"^PermissionError: \[Errno 13\]", "run"),
    Case("read_reaper_memory", "open('/proc/1/mem', 'rb').read(16)\n", "error", r"^PermissionError", "run"),
    # rootless runs have the user's own uid: the user's files must be out of sight, not just out of reach
    Case(
        "read_host_home",
        "print(open('HOME_SECRET_FILE').read())\n",
        "error",
        r"^(FileNotFoundError|PermissionError)",
        "run",
        secret_not_printed,
    ),
    Case(
        "unix_socket_in_home",
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('HOME_SOCKET')\n",
        "error",
        r"^(FileNotFoundError|PermissionError|ConnectionRefusedError)",
        "run",
    ),
    Case("list_run", "import os\nprint(sorted(os.listdir('/run')))\n", "ok", r"^completed$", "run", printed("[]\n")),
    # secrets and other processes
    Case("env_secret", "import os\nprint(dict(os.environ))\n", "ok", r"^completed$", "run", no_secret),
    Case(
        "proc_environ",
        "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\nprint('visible=%d' % len(pids))\n"
        "for p in pids:\n    try:\n        print(open(f'/proc/{p}/environ').read())\n    except OSError as e:\n        print(p, e)\n",
        "ok",
        r"^completed$",
        "run",
        only_own_processes,
    ),
    Case("session_keyring", "print(open('/proc/keys').read())\n", "ok", r"^completed$", "run", lambda out: _no_root_keys(out)),
    # network
    Case(
        "loopback_listener",
        "import socket\nsocket.create_connection(('127.0.0.1', PORT_NUMBER), 1)\n",
        "error",
        r"Network is unreachable|Connection refused",
        "run",
    ),
    Case("dns_lookup", "import socket\nsocket.getaddrinfo('thinktank.invalid', 80)\n", "error", r"^gaierror", "run"),
    Case(
        "no_route_out",
        "import socket\nprint(socket.if_nameindex())\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.connect(('192.0.2.1', 9))\n",
        "error",
        r"Network is unreachable",
        "run",
        printed("[(1, 'lo')]"),
    ),
    # signals and the parent
    Case(
        "kill_parent",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "error",
        r"^PermissionError",
        "run",
        rootless=("ok", r"^completed$"),  # same uid, so allowed; but the kernel drops it: PID 1 of its namespace
    ),
    Case(
        "signal_the_reaper",
        "import os, signal, time\nfor sig in ('INT', 'TERM', 'HUP', 'ALRM', 'USR1', 'CHLD', 'STOP', 'KILL'):\n"
        "    try:\n        os.kill(1, getattr(signal, 'SIG' + sig))\n    except OSError:\n        pass\n"
        "time.sleep(0.5)\nprint('still here')\n",  # had the reaper died, the kernel would have killed us by now
        "ok",
        r"^completed$",
        "run",
        printed("still here"),
    ),
    Case(
        "killpg_own_group",
        "import os, signal\nos.killpg(0, signal.SIGKILL)\n",
        "killed",
        r"^killed by signal 9 \(SIGKILL\)$",
        "run",
    ),
    Case(
        "kill_everyone",
        "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n" + RIGHT,
        "pass",
        r"^passed$",
    ),
    Case(
        "ignore_sigterm",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.05)\n",
        "timeout",
        r"^timeout after 3s \(wall\)$",
        "run",
    ),
    Case(
        "sigalrm_games",
        "import signal, time\nsignal.signal(signal.SIGALRM, lambda *a: signal.alarm(1))\nsignal.alarm(1)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)\nwhile True:\n    time.sleep(0.05)\n",
        "timeout",
        r"^timeout after",
        "run",
    ),
    Case(
        "setrlimit_raise",
        "import resource\nresource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)\n",
        "error",
        r"ValueError: not allowed to raise maximum limit",
        "run",
    ),
    Case(
        "setuid_root",
        "import os\nos.setuid(0)\n",
        "error",
        r"^PermissionError: \[Errno 1\] Operation not permitted",
        "run",
        rootless=("error", r"^OSError: \[Errno 22\] Invalid argument$"),  # uid 0 does not exist in its namespace
    ),
    Case(
        "mount_attempt",
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nif libc.mount(b'none', b'/tmp', b'tmpfs', 0, None):\n"
        "    raise PermissionError(os.strerror(ctypes.get_errno()))\n",
        "error",
        r"^PermissionError: Operation not permitted",
        "run",
    ),
    Case(
        "daemon_grandchild",
        f"import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv('/bin/sleep', ['sleep', '{SLEEP_MARK}'])\n    os._exit(0)\nprint('parent done')\n",
        "ok",
        r"^completed$",
        "run",
        no_sleeper,
    ),
    Case(
        "popen_background",
        f"import subprocess\nsubprocess.Popen(['sleep', '{SLEEP_MARK}'], start_new_session=True)\n" + RIGHT,
        "pass",
        r"^passed$",
        after=no_sleeper,
    ),
    # fake passes
    Case("sys_exit_module", "import sys\nsys.exit(0)\n" + RIGHT, "fail", r"^SystemExit: 0$"),
    Case("sys_exit_in_function", "import sys\ndef add(a, b):\n    sys.exit(0)\n", "fail", r"^SystemExit: 0$"),
    Case("os_exit_module", "import os\nos._exit(0)\n" + RIGHT, "fail", r"^process exited before reporting \(exit code 0\)$"),
    Case(
        "os_exit_in_function",
        "import os\ndef add(a, b):\n    os._exit(0)\n",
        "fail",
        r"^process exited before reporting \(exit code 0\)$",
    ),
    Case("raise_systemexit_in_tests", "def add(a, b):\n    raise SystemExit(0)\n", "fail", r"^SystemExit: 0$"),
    Case(
        "keyboard_interrupt", "def add(a, b):\n    raise KeyboardInterrupt\n", "fail", r"^KeyboardInterrupt at <solution> line 2"
    ),
    Case(
        "patch_builtin_abs",
        "import builtins\nbuiltins.abs = lambda x: 0\n" + WRONG,
        "fail",
        r"^Tampering: builtins modified: abs",
    ),
    Case("shadow_builtin_abs", "def abs(x):\n    return 0\n" + WRONG, "fail", r"^AssertionError at <tests> line 2"),
    Case(
        "patch_assertion_error",
        "import builtins\nbuiltins.AssertionError = type('AssertionError', (BaseException,), {})\n" + WRONG,
        "fail",
        r"^Tampering: builtins modified: AssertionError",
    ),
    Case("always_equal", ALWAYS_EQUAL + "def add(a, b):\n    return Eq()\n", "fail", r"returned a Eq object; only plain data"),
    Case(
        "int_subclass_equal",
        "class I(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\n"
        "def add(a, b):\n    return I(7)\n",
        "fail",
        r"returned a I object",
    ),
    Case("always_equal_nested", ALWAYS_EQUAL + "def add(a, b):\n    return [Eq()]\n", "fail", r"returned a Eq object"),
    Case(
        "always_equal_lru_cache",
        ALWAYS_EQUAL + "import functools\n@functools.lru_cache\ndef add(a, b):\n    return Eq()\n",
        "fail",
        r"returned a Eq object",
    ),
    Case(
        "fake_report_stdout",
        "print('{\"passed\": true}')\nprint('ALL TESTS PASSED')\nprint('ok 1 - passed')\n" + WRONG,
        "fail",
        r"^AssertionError at <tests> line 2",
    ),
    Case(
        "guess_report_fd",
        "import os\nfor fd in range(3, 1024):\n    try:\n        os.write(fd, b\"0\" * 32 + b\" {'kind': 'done', 'ok': True}\\n\")\n"
        "    except OSError:\n        pass\nos._exit(0)\n" + WRONG,
        "fail",
        r"^report channel tampered: unauthenticated record$",
    ),
    Case(
        "close_report_channels",
        "import os\nfor fd in range(3, 1024):\n    try:\n        os.close(fd)\n    except OSError:\n        pass\n" + RIGHT,
        "fail",
        r"^process exited before reporting",
    ),
    Case(
        "patch_math_isclose",
        "import math\nmath.isclose = lambda *a, **k: True\n" + WRONG,
        "fail",
        r"^Tampering: math modified: isclose$",
    ),
    Case(
        "patch_counter_eq",
        "import collections\ncollections.Counter.__eq__ = lambda s, o: True\ndef add(a, b):\n    return collections.Counter()\n",
        "fail",
        r"^Tampering: Counter modified: __eq__$",
    ),
    Case(
        "patch_the_harness",
        "import sys\ntry:\n    sys.modules['__main__']._Job.check = lambda self, s, e: self.write(kind='done', ok=True)\n"
        "except AttributeError:\n    pass\n" + WRONG,
        "fail",
        r"^AssertionError at <tests> line 2",
    ),
    Case(
        "settrace_skip_asserts",
        "import sys\ndef tracer(frame, event, arg):\n    return tracer\nsys.settrace(tracer)\n" + WRONG,
        "fail",
        r"^Tampering: called sys.settrace",
    ),
    Case(
        "close_stdout_right_answer",
        "import os, sys\nos.close(1)\nos.close(2)\nsys.stdout = open(os.devnull, 'w')\n" + RIGHT,
        "pass",
        r"^passed$",
    ),
    Case(
        "close_stdout_wrong_answer", "import os\nos.close(1)\nos.close(2)\n" + WRONG, "fail", r"^AssertionError at <tests> line 2"
    ),
]


def sandbox_processes() -> list[str]:
    return pids_with_uid_in(UID_BASE)


NATIVE = "root" if os.geteuid() == 0 else "rootless"


@dataclass
class Outcomes:
    mode: str
    results: dict[str, Verdict | SandboxRun]
    child: dict[str, tuple[str, str]] | None = None  # rootless run as another user: its outcome per test id
    child_output: str = field(default="", repr=False)


def _record(result: Verdict | SandboxRun) -> dict:
    if isinstance(result, SandboxRun):
        return {"run": True, "status": result.status, "reason": result.reason, "duration_s": result.duration_s,
                "stdout": result.stdout, "memory_cap": result.memory_cap}  # fmt: skip
    return {"run": False, "passed": result.passed, "score": result.score, "reason": result.reason,
            "duration_s": result.duration_s, "details": {k: result.details.get(k) for k in ("stdout", "memory_cap")}}  # fmt: skip


def _result(record: dict) -> Verdict | SandboxRun:
    if record["run"]:
        keys = ("status", "reason", "duration_s", "stdout", "memory_cap")
        return SandboxRun(**{key: record[key] for key in keys})
    return Verdict(record["passed"], record["reason"], record["score"], record["details"], record["duration_s"])


def _run_here() -> dict[str, Verdict | SandboxRun]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    home = Path(tempfile.mkdtemp(prefix=".thinktank-hostile-", dir=Path.home()))  # the user's own private files
    (home / "secret").write_text(SECRET)
    (home / "secret").chmod(0o600)
    home_listener = socket.socket(socket.AF_UNIX)
    home_listener.bind(str(home / "s.sock"))
    home_listener.listen()
    home_listener.setblocking(False)
    (home / "s.sock").chmod(0o777)
    placeholders = {"PORT_NUMBER": str(port), "HOME_SECRET_FILE": str(home / "secret"), "HOME_SOCKET": str(home / "s.sock")}
    os.environ["THINKTANK_TEST_SECRET"] = SECRET
    sandbox = PythonSandbox(LIMITS, max_workers=4, uid_base=UID_BASE)
    assert sandbox.mode == NATIVE

    async def one(case: Case) -> Verdict | SandboxRun:
        source = case.source
        for placeholder, value in placeholders.items():
            source = source.replace(placeholder, value)
        if case.mode == "run":
            return await sandbox.run(source)
        return await sandbox.check_function(source, TEST, "add")

    async def everything() -> list[Verdict | SandboxRun]:
        return await asyncio.wait_for(asyncio.gather(*(one(c) for c in CASES)), 120)

    try:
        results = asyncio.run(everything())
        for server in (listener, home_listener):
            with pytest.raises(BlockingIOError):
                server.accept()  # nothing ever reached the listeners
    finally:
        del os.environ["THINKTANK_TEST_SECRET"]
        listener.close()
        home_listener.close()
        shutil.rmtree(home)
    return dict(zip([c.name for c in CASES], results, strict=True))


@pytest.fixture(scope="module", params=["root", "rootless"])
def outcomes(request):
    mode = request.param
    if mode == NATIVE:
        results = _run_here()
        if out := os.environ.get("THINKTANK_TEST_OUT"):  # we are the unprivileged run: hand the results back
            Path(out, "hostile.json").write_text(json.dumps({name: _record(r) for name, r in results.items()}))
        yield Outcomes(mode, results)
        assert sandbox_processes() == []
        return
    if mode == "root":
        pytest.skip("root mode needs root")
    if reason := unprivileged.skip_reason():
        pytest.skip(reason)
    child = unprivileged.sandbox_suite(SEED)
    if "hostile.json" not in child.files:
        pytest.fail(f"the unprivileged run reported no results:\n{child.output[-5000:]}")
    results = {name: _result(record) for name, record in json.loads(child.files["hostile.json"]).items()}
    yield Outcomes(mode, results, child.module("tests/verifiers/test_hostile_programs.py"), child.output)
    assert pids_with_uid_in(unprivileged.UID, 1) == []


def _child_passed(outcomes: Outcomes, test_id: str) -> None:
    """When the rootless results come from the unprivileged run, its own test of the same id must have passed."""
    if outcomes.child is not None:
        outcome, message = outcomes.child.get(f"tests/verifiers/test_hostile_programs.py::{test_id}", ("missing", ""))
        assert outcome == "passed", f"as the unprivileged user: {outcome}\n{message or outcomes.child_output[-3000:]}"


def test_there_are_at_least_30_hostile_programs():
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_program_is_contained(case: Case, outcomes: Outcomes, request):
    _child_passed(outcomes, request.node.name)
    result = outcomes.results[case.name]
    expect, reason = case.rootless if outcomes.mode == "rootless" and case.rootless else (case.expect, case.reason)
    if case.mode == "run":
        assert isinstance(result, SandboxRun)
        assert result.status in expect.split("|"), result
        stdout, memory_cap = result.stdout, result.memory_cap
    else:
        assert isinstance(result, Verdict)
        assert result.passed is (expect == "pass"), result
        assert result.score == (1.0 if result.passed else 0.0)
        stdout, memory_cap = result.details.get("stdout", ""), result.details["memory_cap"]
    assert re.search(reason, result.reason), f"{case.name}: unexpected reason {result.reason!r}"
    assert result.duration_s < LIMITS.wall_s + 2
    if case.needs_cgroup and memory_cap == "rlimit":
        pytest.skip("no memory cgroup for these runs: only per-process limits apply")
    if case.after:
        case.after(stdout)
    assert sandbox_processes() == [], "a sandboxed process outlived its run"


def test_no_stray_processes_or_cgroups_after_the_suite(outcomes: Outcomes, request):
    _child_passed(outcomes, request.node.name)
    assert len(outcomes.results) == len(CASES)
    assert sandbox_processes() == []
    no_sleeper("")
    root = memory_cgroup_root()
    ours = {f"thinktank-sandbox-{uid}" for uid in own_uids(UID_BASE)}
    assert root is None or not [path for path in root.path.glob("**/thinktank-sandbox-*") if path.name in ours]
