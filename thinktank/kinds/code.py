"""Python functions: a program implementing the task's entry point, equal when it behaves the same.

Keys (as in AlphaCode's clustering, Li et al. 2022): each distinct program runs once in the sandbox on the argument
lists of the public tests' calls to the entry point, and the key is the tuple of output reprs. A program that fails
on every input casts no vote. With no public tests (or no entry point) there are no shared inputs, and the key falls
back to the normalised source (formatting, comments and docstrings removed), so only textually equivalent programs
agree. Public checks: the task's `public_tests` asserts; hidden grading: HumanEval's `check(candidate)`.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from thinktank._aio import gather_all
from thinktank.kinds.base import Key, Reply, TaskKind
from thinktank.problems import Problem, TaskInput
from thinktank.verifiers.base import Verdict
from thinktank.verifiers.python_sandbox import HiddenTests, PythonSandbox

if TYPE_CHECKING:
    from thinktank.engine.resources import Resources

__all__ = ["CodeKind", "call_args", "call_inputs", "source_key"]


def _drop_main_guard(code: str) -> str:
    """Remove top-level `if __name__ == "__main__":` blocks: they would run (and may block on input) when graded."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines()
    for node in reversed(tree.body):
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and node.end_lineno is not None:
            del lines[node.lineno - 1 : node.end_lineno]
    return "\n".join(lines)


def extract_code(reply: str, entry_point: str, code_prompt: str) -> str:
    """The program in a model reply: the fenced block defining `entry_point`, plus the prompt's imports and helpers.

    A reply holding only a function body is appended to `code_prompt`, as in the original HumanEval harness.
    """
    blocks = [
        b for b in re.findall(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", reply, re.DOTALL | re.IGNORECASE) if b.strip()
    ]
    defines = re.compile(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
    defining = [b for b in blocks if defines.search(b)]
    code = defining[-1] if defining else blocks[0] if blocks else reply
    if not blocks and (
        m := re.search(rf"^(?:(?:from|import)\s.*\n)*\s*def\s+{re.escape(entry_point)}\s*\(", reply, re.MULTILINE)
    ):
        code = reply[m.start() :]  # unfenced full function after some prose
    code = _drop_main_guard(textwrap.dedent(code).strip("\n"))
    if not defines.search(code) and code_prompt.strip():
        return code_prompt.rstrip() + "\n" + textwrap.indent(code, "    ") + "\n"
    try:
        prompt_tree, own = ast.parse(code_prompt), ast.parse(code)
    except SyntaxError:
        return code + "\n"
    own_names = {n.name for n in own.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    prompt_lines, preamble = code_prompt.splitlines(), []
    for node in prompt_tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and (node.name == entry_point or node.name in own_names):
            continue
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        preamble.append("\n".join(prompt_lines[start - 1 : node.end_lineno]))
    return "\n\n".join([*preamble, code]) + "\n"


class CodeKind(TaskKind):
    name = "code"
    answer_format = "Write the complete function `{entry_point}` (with the imports it needs) in one ```python block."
    fence = "python"
    needs = (
        ("entry_point", " (the function to implement)"),
        ("hidden.test_code", " (source defining check(candidate))"),
    )
    artefact = "program"
    keyed_by_answer = True
    search_runs_answers = True

    def extract(self, task: TaskInput, text: str) -> str | None:
        return extract_code(text, task.entry_point or "", task.meta.get("code_prompt", ""))

    async def answer_keys(
        self, resources: Resources, task: TaskInput, candidates: Sequence[Reply], memo: dict[str, Key]
    ) -> list[Key]:
        programs = list(dict.fromkeys(c.answer for c in candidates if c.answer and c.answer.strip()))
        inputs = call_inputs(task) if task.entry_point else []
        if not inputs:
            return [("source", source_key(c.answer)) if c.answer and c.answer.strip() else None for c in candidates]
        fresh = [p for p in programs if p not in memo]
        sandbox = resources.get(PythonSandbox)
        outputs = await gather_all(sandbox.call_outputs(p, task.entry_point or "", inputs) for p in fresh)
        for program, out in zip(fresh, outputs, strict=True):
            memo[program] = ("outputs", tuple(out)) if any(o is not None for o in out) else None
        return [memo.get(c.answer) if c.answer else None for c in candidates]

    def has_public_checks(self, task: TaskInput) -> bool:
        return bool(task.public_tests)

    def public_pass_is_final(self, task: TaskInput) -> bool:
        return bool(task.public_tests)

    def takes_unit_tests(self, task: TaskInput) -> bool:
        return bool(task.entry_point)

    async def run_unit_tests(self, resources: Resources, task: TaskInput, answer: str, tests: Sequence[str]) -> Verdict:
        return await resources.get(PythonSandbox).run_asserts(answer, tests)

    async def run_public_checks(self, resources: Resources, task: TaskInput, answer: str) -> Verdict:
        return await resources.get(PythonSandbox).run_asserts(answer, task.public_tests)

    async def feedback(self, resources: Resources, task: TaskInput, answer: str | None, verdict: Verdict) -> str | None:
        """The first failing assert with its error, what the function returned there, and the traceback."""
        failures = verdict.details.get("failures") or []
        if answer is None or not failures:
            return None
        first = failures[0]
        lines = [f"It fails this test:\n{first['assert']}\nError: {first['error']}"]
        args = call_args(first["assert"], task.entry_point or "")
        if args is not None and first["error"].startswith("AssertionError"):
            (actual,) = await resources.get(PythonSandbox).call_outputs(answer, task.entry_point or "", [args])
            if actual is not None:
                lines.append(f"Your function returned: {actual}")
        if "<solution>" in first.get("traceback", ""):
            lines.append(f"Traceback (most recent call last):\n{first['traceback'][-600:]}")
        if len(failures) > 1:
            lines.append("It also fails: " + "; ".join(f["assert"] for f in failures[1:3]))
        return "\n".join(lines)

    async def grade(self, resources: Resources, problem: Problem, answer: str) -> Verdict:
        tests = HiddenTests(problem.hidden.test_code, problem.input.entry_point or "")
        return await resources.get(PythonSandbox).check(answer, tests)


def call_inputs(task: TaskInput) -> list[str]:
    """Argument lists ("[1, 2], 3") of every call to the entry point in the public tests, in order, deduplicated."""
    found: list[str] = []
    for test in task.public_tests:
        try:
            tree = ast.parse(test)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == task.entry_point:
                args = [ast.unparse(a) for a in node.args]
                args += [f"{k.arg}={ast.unparse(k.value)}" if k.arg else f"**{ast.unparse(k.value)}" for k in node.keywords]
                found.append(", ".join(args))
    return list(dict.fromkeys(found))


def source_key(program: str) -> str:
    """The program's source with formatting, comments and docstrings normalised away (whitespace-collapsed if unparsable)."""
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return re.sub(r"\s+", " ", program).strip()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def call_args(assert_src: str, entry_point: str) -> str | None:
    """`"[1, 2], k=3"` for `assert f([1, 2], k=3) == y`: the call whose actual result is worth showing."""
    try:
        (node,) = ast.parse(assert_src).body
    except (SyntaxError, ValueError):
        return None
    test = node.test if isinstance(node, ast.Assert) else None
    call = test.left if isinstance(test, ast.Compare) else test
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == entry_point):
        return None
    return ", ".join([*map(ast.unparse, call.args), *map(ast.unparse, call.keywords)])
