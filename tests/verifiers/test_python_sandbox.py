"""The sandbox's verdicts on ordinary programs: right answers pass, wrong ones say why, the pool behaves."""

from __future__ import annotations

import ast
import asyncio
import os
import uuid

import pytest

from thinktank.exceptions import ConfigError, VerificationError
from thinktank.verifiers._sandbox_process import memory_cgroup_root
from thinktank.verifiers.python_sandbox import PythonSandbox, SandboxLimits

from . import test_hostile_programs, unprivileged
from .sandbox_procs import per_process_uid_base, pids_with_uid_in

UID_BASE = per_process_uid_base(1_700_000_000)
ROOTLESS = os.geteuid() != 0
SOLUTION = '''
def running_max(xs):
    """Running maximum of a list."""
    out, best = [], None
    for x in xs:
        best = x if best is None else max(best, x)
        out.append(best)
    return out
'''
TESTS = """
def check(candidate):
    assert candidate([]) == []
    assert candidate([1, 3, 2]) == [1, 3, 3]
    assert candidate([-1, -2]) == [-1, -1], "negatives"
"""
ASSERTS = [
    "assert running_max([]) == []",
    "assert running_max([1, 3, 2]) == [1, 3, 3]",
    "assert running_max([2, 1]) == [2, 1], 'the max never goes down'",
    "assert running_max([5]) == [6]",
]


@pytest.fixture
def sandbox() -> PythonSandbox:
    return PythonSandbox(SandboxLimits(wall_s=5, cpu_s=3), max_workers=2, uid_base=UID_BASE)


def sandbox_pids() -> list[str]:
    return pids_with_uid_in(UID_BASE)


async def test_correct_solution_passes(sandbox):
    verdict = await sandbox.check_function(SOLUTION, TESTS, "running_max")
    assert (verdict.passed, verdict.reason, verdict.score) == (True, "passed", 1.0)
    assert verdict.details["status"] == "ok" and 0 < verdict.duration_s < 5


async def test_wrong_solution_fails_with_the_assert_message(sandbox):
    negatives_wrong = SOLUTION.replace(
        "best = x if best is None else max(best, x)", "best = x if best is None else max(best, x, 0)"
    )
    verdict = await sandbox.check_function(negatives_wrong, TESTS, "running_max")
    assert not verdict.passed and verdict.reason == "AssertionError: negatives" and verdict.score == 0.0
    no_running = SOLUTION.replace("out.append(best)", "out.append(x)")
    verdict = await sandbox.check_function(no_running, TESTS, "running_max")
    assert verdict.reason == "AssertionError at <tests> line 4: assert candidate([1, 3, 2]) == [1, 3, 3]"
    assert '"<tests>", line 4, in check' in verdict.details["tb"]


async def test_crash_in_solution_points_at_the_solution_line(sandbox):
    verdict = await sandbox.check_function("def running_max(xs):\n    return [1 // 0]\n", TESTS, "running_max")
    assert verdict.reason == "ZeroDivisionError: integer division or modulo by zero"
    assert '"<solution>", line 2, in running_max\n    return [1 // 0]' in verdict.details["tb"]


async def test_broken_programs_say_what_is_wrong(sandbox):
    syntax = await sandbox.check_function("def running_max(xs)\n    return xs\n", TESTS, "running_max")
    assert not syntax.passed and syntax.reason.startswith("SyntaxError: expected ':'")
    missing = await sandbox.check_function("def other(xs):\n    return xs\n", TESTS, "running_max")
    assert missing.reason == "NameError: entry point 'running_max' is not defined"
    no_check = await sandbox.check_function(SOLUTION, "def verify(candidate):\n    pass\n", "running_max")
    assert no_check.reason == "NameError: the test code defines no check(candidate)"


async def test_tests_see_helpers_defined_by_the_prompt(sandbox):
    prompt_and_solution = "def encode(s):\n    return s[::-1]\n\ndef decode(s):\n    return s[::-1]\n"
    tests = "def check(candidate):\n    for word in ['abc', 'hello']:\n        assert candidate(encode(word)) == word\n"
    verdict = await sandbox.check_function(prompt_and_solution, tests, "decode")
    assert verdict.passed, verdict.reason


async def test_run_asserts_scores_each_assert_separately(sandbox):
    verdict = await sandbox.run_asserts(SOLUTION, ASSERTS)
    assert not verdict.passed and verdict.score == 0.5
    assert verdict.details["results"] == [True, True, False, False]
    first, second = verdict.details["failures"]
    assert (first["index"], first["assert"], first["error"]) == (2, ASSERTS[2], "AssertionError: the max never goes down")
    assert second["error"] == "AssertionError at <assert 3> line 1: assert running_max([5]) == [6]"
    assert '"<assert 3>", line 1' in second["traceback"]
    assert verdict.reason == "passed 2/4 asserts; first failure: AssertionError: the max never goes down"
    assert (await sandbox.run_asserts(SOLUTION, ASSERTS[:2])).passed


async def test_a_hanging_assert_does_not_hide_the_others():
    sandbox = PythonSandbox(SandboxLimits(wall_s=1, cpu_s=5), max_workers=2, uid_base=UID_BASE)
    solution = "def f(x):\n    while x < 0:\n        pass\n    return x * 2\n"
    asserts = ["assert f(1) == 2", "assert f(-1) == -2", "assert f(2) == 4", "assert f(3) == 7"]
    verdict = await sandbox.run_asserts(solution, asserts)
    assert verdict.details["results"] == [True, False, True, False] and verdict.score == 0.5
    assert verdict.details["failures"][0]["error"] == "timeout after 1s (wall)"


async def test_a_solution_that_does_not_load_fails_every_assert(sandbox):
    verdict = await sandbox.run_asserts("import no_such_module\n", ASSERTS)
    assert verdict.score == 0.0 and len(verdict.details["failures"]) == 4
    assert verdict.details["failures"][3]["error"] == "ModuleNotFoundError: No module named 'no_such_module'"
    empty = await sandbox.run_asserts(SOLUTION, [])
    assert empty.passed and empty.reason == "no asserts; solution ran"


async def test_call_outputs_gives_reprs_and_none_for_errors(sandbox):
    solution = "def pick(xs, k=1):\n    return sorted(set(xs))[:k] if k else {str(x) for x in xs}\n"
    inputs = ["[3, 1, 2]", "[3, 1, 2], 2", "[5], k=0", "None", "['b', 'a', 'c'], 0"]
    outputs = await sandbox.call_outputs(solution, "pick", inputs)
    assert outputs[:4] == ["[1]", "[1, 2]", "{'5'}", None]
    assert outputs[4] in (
        "{'a', 'b', 'c'}",
        "{'a', 'c', 'b'}",
        "{'b', 'a', 'c'}",
        "{'b', 'c', 'a'}",
        "{'c', 'a', 'b'}",
        "{'c', 'b', 'a'}",
    )
    assert await sandbox.call_outputs(solution, "pick", inputs) == outputs  # fixed hash seed: set order is stable
    assert await sandbox.call_outputs(solution, "missing", inputs) == [None] * 5


async def test_call_reports_the_return_value_the_error_or_the_stop_with_what_was_printed():
    sandbox = PythonSandbox(SandboxLimits(wall_s=2, cpu_s=1), max_workers=2, uid_base=UID_BASE)
    ok = await sandbox.call("print('top')\ndef f(x=1):\n    print('in f')\n    return x * 2\n", "f", "x=21")
    assert (ok.ok, ok.status, ok.out, ok.stdout) == (True, "ok", "42", "top\nin f\n")
    raised = await sandbox.call("def f():\n    n = 0\n    return 1 / n\n", "f")
    assert (raised.status, raised.out, raised.reason) == ("error", None, "ZeroDivisionError: division by zero")
    assert "return 1 / n" in raised.traceback
    broken = await sandbox.call("def f(:\n", "f")
    assert broken.status == "error" and broken.reason.startswith("SyntaxError")
    missing = await sandbox.call("x = 1\n", "f")
    assert missing.status == "error" and "entry point 'f' is not defined" in missing.reason
    hangs = await sandbox.call("def f():\n    while True:\n        pass\n", "f")
    assert hangs.status == "timeout" and not hangs.ok and hangs.out is None


async def test_call_outputs_survives_a_hanging_input():
    sandbox = PythonSandbox(SandboxLimits(wall_s=1, cpu_s=5), max_workers=2, uid_base=UID_BASE)
    solution = "def f(x):\n    while x < 0:\n        pass\n    return x + 1\n"
    assert await sandbox.call_outputs(solution, "f", ["1", "-1", "2"]) == ["2", None, "3"]


@pytest.mark.parametrize("workers", [1, 3])
async def test_runs_overlap_but_never_exceed_max_workers(workers):
    sandbox = PythonSandbox(SandboxLimits(wall_s=10), max_workers=workers, uid_base=UID_BASE)
    program = "import time\nstart = time.time()\ntime.sleep(0.4)\nprint(start, time.time())\n"
    runs = await asyncio.gather(*(sandbox.run(program) for _ in range(6)))
    spans = [tuple(map(float, run.stdout.split())) for run in runs]
    peak = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert peak == workers if workers == 1 else 2 <= peak <= workers
    assert len({run.stdout for run in runs}) == 6


async def test_each_run_gets_a_fresh_private_tmp_that_disappears(sandbox):
    name = f"marker-{uuid.uuid4().hex}"
    writer = await sandbox.run(
        f"import os\nopen('{name}', 'w').write('x')\nprint(os.getcwd(), os.environ['HOME'], os.listdir('.'))\n"
        "print([line.split()[4] + ' ' + line.split(' - ')[1].split()[0] for line in open('/proc/self/mountinfo') if ' /tmp ' in line])\n"
    )
    assert writer.status == "ok", writer.reason
    assert writer.stdout.splitlines()[0] == f"/tmp /tmp ['{name}']"
    assert "/tmp tmpfs" in writer.stdout.splitlines()[1]
    reader = await sandbox.run("import os\nprint(os.listdir('.'))\n")
    assert reader.stdout == "[]\n"
    assert not os.path.exists(f"/tmp/{name}")


async def test_identity_limits_and_environment(sandbox):
    probe = (
        "import os, resource, sys\n"
        "print(os.getuid(), os.getgid(), str(os.getgroups()).replace(' ', ''), sorted(os.environ), repr(sys.stdin.read()))\n"
        "print([line for line in open('/proc/self/status') if line.startswith('NoNewPrivs')][0].split()[1])\n"
        "print(*(resource.getrlimit(getattr(resource, 'RLIMIT_' + n))[1] for n in ('CPU', 'AS', 'FSIZE', 'NPROC')))\n"
    )
    probe += "print(*(line.split()[1] for line in open('/proc/self/status') if line.startswith('Cap')))\n"
    run = await sandbox.run(probe)
    ids, nnp, limits, caps = run.stdout.splitlines()
    uid, gid, groups, rest = ids.split(" ", 3)
    if ROOTLESS:  # the user's own ids; supplementary groups cannot be dropped unprivileged, they show as 65534
        assert (int(uid), int(gid)) == (os.getuid(), os.getgid())
        assert set(ast.literal_eval(groups)) <= {65534, os.getgid()}
    else:
        assert UID_BASE <= int(uid) < UID_BASE + (1 << 24) and gid == uid and groups == "[]"
    assert rest == "['HOME', 'LANG', 'LC_ALL', 'PATH', 'PYTHONHASHSEED', 'PYTHONIOENCODING', 'TMPDIR'] ''"
    assert nnp == "1"
    assert limits == f"4 {512 << 20} {16 << 20} 32"  # cpu_s=3 -> hard limit 3 + 1
    assert caps.split() == ["0000000000000000"] * 5 or not ROOTLESS  # inheritable ... ambient: nothing left
    assert sandbox.mode == ("rootless" if ROOTLESS else "root")


@pytest.mark.skipif(ROOTLESS, reason="rootless runs share the user's uid: the namespaces keep them apart")
async def test_concurrent_runs_of_two_sandboxes_get_distinct_uids():
    first, second = (PythonSandbox(max_workers=2, uid_base=UID_BASE) for _ in range(2))
    program = "import os, time\ntime.sleep(0.3)\nprint(os.getuid())\n"
    runs = await asyncio.gather(*(box.run(program) for box in (first, second, first, second)))
    assert len({run.stdout for run in runs}) == 4


async def test_output_is_bounded_with_the_tail_kept():
    sandbox = PythonSandbox(SandboxLimits(output_bytes=4096), max_workers=1, uid_base=UID_BASE)
    run = await sandbox.run("import sys\nfor i in range(5000):\n    print(i)\nprint('bye', file=sys.stderr)\n")
    assert run.status == "ok" and run.stdout_truncated and not run.stderr_truncated
    assert len(run.stdout) <= 4096 and run.stdout.endswith("4998\n4999\n") and run.stderr == "bye\n"


async def test_cancelling_a_run_kills_its_processes(sandbox):
    task = asyncio.create_task(sandbox.run("import os, time\nos.fork()\ntime.sleep(60)\n"))
    for _ in range(200):
        await asyncio.sleep(0.02)
        if sandbox_pids():
            break
    assert sandbox_pids(), "the run never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):
        if not sandbox_pids():
            break
        await asyncio.sleep(0.02)
    assert sandbox_pids() == []


async def test_stdlib_containers_count_as_plain_data(sandbox):
    solution = "from collections import Counter, deque\ndef tally(s):\n    return [Counter(s), deque(s[:2])]\n"
    tests = (
        "def check(candidate):\n    counts, head = candidate('abca')\n    assert counts == {'a': 2, 'b': 1, 'c': 1}\n"
        "    assert list(head) == ['a', 'b']\n"
    )
    verdict = await sandbox.check_function(solution, tests, "tally")
    assert verdict.passed, verdict.reason


async def test_strict_returns_can_be_relaxed_for_custom_types():
    solution = (
        "class Point:\n    def __init__(self, x):\n        self.x = x\n    def __eq__(self, o):\n        return self.x == o.x\n"
        "def make(x):\n    return Point(x)\n"
    )
    tests = "def check(candidate):\n    assert candidate(1) == Point(1)\n"
    strict = PythonSandbox(max_workers=1, uid_base=UID_BASE)
    assert (await strict.check_function(solution, tests, "make")).reason.endswith(
        "returned a Point object; only plain data is accepted"
    )
    relaxed = PythonSandbox(max_workers=1, uid_base=UID_BASE, strict_returns=False)
    assert (await relaxed.check_function(solution, tests, "make")).passed


async def test_a_sandbox_that_cannot_start_is_a_verification_error():
    broken = PythonSandbox(python="/nonexistent/python3", max_workers=1, uid_base=UID_BASE)
    with pytest.raises(VerificationError, match="the sandbox did not start: .*/nonexistent/python3"):
        await broken.run("print(1)")


async def test_the_memory_cap_is_named_in_the_details(sandbox):
    verdict = await sandbox.check_function(SOLUTION, TESTS, "running_max")
    parent = memory_cgroup_root()
    assert verdict.details["memory_cap"] == (parent.kind if parent else "rlimit")
    sandbox._cgroups = None  # what a host without a usable memory cgroup gets
    run = await sandbox.run("x = bytearray(10**10)\n")
    assert (run.status, run.memory_cap, run.details()["memory_cap"]) == ("memory", "rlimit", "rlimit")


def test_the_sandbox_tests_pass_as_an_unprivileged_user(request):
    """As root, this module and the hostile suite also run as a dropped user, in rootless mode, for real."""
    if reason := unprivileged.skip_reason():
        pytest.skip(reason)
    child = unprivileged.sandbox_suite(test_hostile_programs.SEED)
    results = child.module("tests/verifiers/test_python_sandbox.py")
    ours = {item.nodeid for item in request.session.items if item.path == request.node.path}
    assert ours <= set(results), f"not run as the unprivileged user: {sorted(ours - set(results))}\n{child.output[-5000:]}"
    skipped = {test for test, (outcome, _) in results.items() if outcome == "skipped"}
    assert skipped <= {
        "tests/verifiers/test_python_sandbox.py::test_concurrent_runs_of_two_sandboxes_get_distinct_uids",
        "tests/verifiers/test_python_sandbox.py::test_the_sandbox_tests_pass_as_an_unprivileged_user",
    }, unprivileged.failures({test: results[test] for test in skipped})
    failed = {test: result for test, result in results.items() if result[0] not in ("passed", "skipped")}
    assert not failed, unprivileged.failures(failed)


def test_limits_are_validated():
    with pytest.raises(ConfigError, match="wall_s must be > 0"):
        SandboxLimits(wall_s=0)
