"""Throughput of the Python sandbox on HumanEval-sized programs (~20-line solution, ~10 asserts in check()).

    .venv/bin/python benchmarks/bench_sandbox.py --count 200 [--workers N] [--mode root|rootless] [--python PATH]

Prints programs/second and p50/p95 latency for `PythonSandbox.check_function` with the default pool
(one worker per CPU). Every program here is correct, so the run also fails loudly if any verdict is not a pass.

--mode: the sandbox mode follows who runs this (root: root mode; anyone else: rootless). As root, `--mode
rootless` re-runs this script as an unprivileged uid the way the tests do (tests/verifiers/unprivileged.py:
a system Python of this version, the checkout bind-mounted read-only into that user's home, a delegated
memory cgroup where there is one). --python: the interpreter the sandboxed runs use (default: this one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from thinktank.verifiers.python_sandbox import PythonSandbox

PROGRAMS: list[tuple[str, str, str]] = [
    (
        "merge_intervals",
        '''
from typing import List


def merge_intervals(intervals: List[List[int]]) -> List[List[int]]:
    """Merge overlapping closed intervals and return them sorted by start."""
    if not intervals:
        return []
    ordered = sorted(intervals, key=lambda pair: pair[0])
    merged = [list(ordered[0])]
    for start, end in ordered[1:]:
        last = merged[-1]
        if start <= last[1]:
            last[1] = max(last[1], end)
        else:
            merged.append([start, end])
    return merged
''',
        """
def check(candidate):
    assert candidate([]) == []
    assert candidate([[1, 3]]) == [[1, 3]]
    assert candidate([[1, 3], [2, 6], [8, 10], [15, 18]]) == [[1, 6], [8, 10], [15, 18]]
    assert candidate([[1, 4], [4, 5]]) == [[1, 5]]
    assert candidate([[5, 6], [1, 2]]) == [[1, 2], [5, 6]]
    assert candidate([[1, 10], [2, 3], [4, 5]]) == [[1, 10]]
    assert candidate([[0, 0], [0, 0]]) == [[0, 0]]
    assert candidate([[-3, -1], [-2, 2]]) == [[-3, 2]]
    assert candidate([[1, 2], [3, 4], [2, 3]]) == [[1, 4]]
    assert candidate([[i, i + 1] for i in range(0, 100, 2)]) == [[i, i + 1] for i in range(0, 100, 2)]
""",
    ),
    (
        "is_palindrome_sentence",
        '''
def is_palindrome_sentence(text: str) -> bool:
    """True if the letters and digits of `text` read the same both ways, ignoring case."""
    kept = [ch.lower() for ch in text if ch.isalnum()]
    left, right = 0, len(kept) - 1
    while left < right:
        if kept[left] != kept[right]:
            return False
        left += 1
        right -= 1
    return True
''',
        """
def check(candidate):
    assert candidate("") is True
    assert candidate("a") is True
    assert candidate("A man, a plan, a canal: Panama") is True
    assert candidate("race a car") is False
    assert candidate("No 'x' in Nixon") is True
    assert candidate("12321") is True
    assert candidate("123 21") is True
    assert candidate("ab") is False
    assert candidate("Was it a car or a cat I saw?") is True
    assert candidate("palindrome") is False
""",
    ),
    (
        "roman_to_int",
        '''
def roman_to_int(numeral: str) -> int:
    """Convert a Roman numeral (I..MMMCMXCIX) to an integer."""
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    previous = 0
    for ch in reversed(numeral):
        value = values[ch]
        if value < previous:
            total -= value
        else:
            total += value
            previous = value
    return total
''',
        """
def check(candidate):
    assert candidate("I") == 1
    assert candidate("III") == 3
    assert candidate("IV") == 4
    assert candidate("IX") == 9
    assert candidate("LVIII") == 58
    assert candidate("MCMXCIV") == 1994
    assert candidate("MMXXIV") == 2024
    assert candidate("XL") == 40
    assert candidate("CD") == 400
    assert candidate("MMMCMXCIX") == 3999
""",
    ),
    (
        "top_k_frequent",
        '''
from collections import Counter
from typing import List


def top_k_frequent(words: List[str], k: int) -> List[str]:
    """The k most frequent words, ties broken alphabetically."""
    counts = Counter(words)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [word for word, _ in ranked[:k]]
''',
        """
def check(candidate):
    assert candidate([], 1) == []
    assert candidate(["a"], 1) == ["a"]
    assert candidate(["i", "love", "code", "i", "love", "coding"], 2) == ["i", "love"]
    assert candidate(["b", "a", "b", "a"], 1) == ["a"]
    assert candidate(["x", "y", "z"], 3) == ["x", "y", "z"]
    assert candidate(["x", "y", "z"], 5) == ["x", "y", "z"]
    assert candidate(["the", "day", "is", "sunny", "the", "the", "sunny", "is", "is"], 4) == ["is", "the", "sunny", "day"]
    assert candidate(["a"] * 5 + ["b"] * 5 + ["c"], 2) == ["a", "b"]
    assert candidate(["q"] * 3, 0) == []
    assert candidate(list("mississippi"), 2) == ["i", "s"]
""",
    ),
    (
        "spiral_order",
        '''
from typing import List


def spiral_order(matrix: List[List[int]]) -> List[int]:
    """Elements of a rectangular matrix in clockwise spiral order."""
    out = []
    top, bottom = 0, len(matrix) - 1
    left, right = 0, (len(matrix[0]) - 1) if matrix else -1
    while top <= bottom and left <= right:
        out.extend(matrix[top][c] for c in range(left, right + 1))
        out.extend(matrix[r][right] for r in range(top + 1, bottom + 1))
        if top < bottom:
            out.extend(matrix[bottom][c] for c in range(right - 1, left - 1, -1))
        if left < right:
            out.extend(matrix[r][left] for r in range(bottom - 1, top, -1))
        top, bottom, left, right = top + 1, bottom - 1, left + 1, right - 1
    return out
''',
        """
def check(candidate):
    assert candidate([]) == []
    assert candidate([[1]]) == [1]
    assert candidate([[1, 2], [3, 4]]) == [1, 2, 4, 3]
    assert candidate([[1, 2, 3], [4, 5, 6], [7, 8, 9]]) == [1, 2, 3, 6, 9, 8, 7, 4, 5]
    assert candidate([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]) == [1, 2, 3, 4, 8, 12, 11, 10, 9, 5, 6, 7]
    assert candidate([[1, 2, 3]]) == [1, 2, 3]
    assert candidate([[1], [2], [3]]) == [1, 2, 3]
    assert candidate([[1, 2], [3, 4], [5, 6]]) == [1, 2, 4, 6, 5, 3]
    assert sorted(candidate([[r * 5 + c for c in range(5)] for r in range(5)])) == list(range(25))
    assert candidate([[7, 8]]) == [7, 8]
""",
    ),
    (
        "count_primes",
        '''
def count_primes(n: int) -> int:
    """Number of primes strictly below n (sieve of Eratosthenes)."""
    if n < 3:
        return 0
    sieve = bytearray([1]) * n
    sieve[0] = sieve[1] = 0
    p = 2
    while p * p < n:
        if sieve[p]:
            sieve[p * p :: p] = bytearray(len(range(p * p, n, p)))
        p += 1
    return sum(sieve)
''',
        """
def check(candidate):
    assert candidate(0) == 0
    assert candidate(2) == 0
    assert candidate(3) == 1
    assert candidate(10) == 4
    assert candidate(11) == 4
    assert candidate(12) == 5
    assert candidate(100) == 25
    assert candidate(1000) == 168
    assert candidate(10000) == 1229
    assert candidate(100000) == 9592
""",
    ),
]


def _cpu_seconds() -> float:
    """CPU used by this process and by every sandbox it has reaped."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench(count: int, workers: int | None, python: str | None) -> None:
    sandbox = PythonSandbox(max_workers=workers, python=python)
    jobs = [PROGRAMS[i % len(PROGRAMS)] for i in range(count)]
    latencies: list[float] = []  # one sandboxed run, spawn to exit (queueing for a worker not included)
    caps: set[str] = set()  # details["memory_cap"] of every verdict

    async def one(entry: str, solution: str, tests: str) -> bool:
        verdict = await sandbox.check_function(solution, tests, entry)
        latencies.append(verdict.duration_s)
        caps.add(verdict.details["memory_cap"])
        return verdict.passed

    await one(*PROGRAMS[0])  # warm the page cache once
    latencies.clear()
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    passed = await asyncio.gather(*(one(*job) for job in jobs))
    elapsed = time.perf_counter() - started
    cpu_ms = (_cpu_seconds() - cpu_before) / count * 1000
    print(f"mode: {sandbox.mode} (uid {os.getuid()})  interpreter: {sandbox.python}  memory cap: {', '.join(sorted(caps))}")
    print(f"programs: {count}  workers: {sandbox.max_workers}  cpus: {os.cpu_count()}  load avg: {os.getloadavg()[0]:.2f}")
    print(f"throughput: {count / elapsed:.1f} programs/s  (wall {elapsed:.2f}s)")
    print(f"latency per run: p50 {statistics.median(latencies) * 1000:.0f} ms  p95 {percentile(latencies, 0.95) * 1000:.0f} ms")
    ceiling = (os.cpu_count() or 1) * 1000 / cpu_ms
    print(f"cpu per program (sandbox + this process): {cpu_ms:.1f} ms -> at most {ceiling:.0f} programs/s on idle cores")
    print(f"verdicts: {sum(passed)}/{count} passed")
    if not all(passed):
        raise SystemExit("a correct program did not pass")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--workers", type=int, default=None, help="default: os.cpu_count()")
    parser.add_argument("--mode", choices=("root", "rootless"), default=None, help="default: who runs this")
    parser.add_argument("--python", default=None, help="interpreter of the sandboxed runs (default: this one)")
    args = parser.parse_args()
    native = "root" if os.geteuid() == 0 else "rootless"
    if args.mode == "root" and native != "root":
        raise SystemExit("root mode needs root")
    if args.mode == "rootless" and native == "root":
        raise SystemExit(_as_unprivileged_user(sys.argv[1:]))
    asyncio.run(bench(args.count, args.workers, args.python))


def _as_unprivileged_user(argv: list[str]) -> int:
    project = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(project))
    from tests.verifiers import unprivileged

    if reason := unprivileged.skip_reason():
        raise SystemExit(f"cannot run rootless as another user here: {reason}")
    child = unprivileged.run_python([str(Path(__file__).relative_to(project)), *argv])
    print(child.output, end="")
    return child.returncode


if __name__ == "__main__":
    main()
