"""`gen_tests`: CodeT — the model writes tests, candidates are ranked by dual execution agreement.

    GenTests(models=["qwen2.5-coder-0.5b-instruct"], n_tests=4, temperature=0.8)

Chen et al. 2022, "CodeT: Code Generation with Generated Tests". Tests are written from the task
prompt alone (never from candidates, never from hidden checks), so a wrong test hurts only the
candidates that agree with it. Candidates that pass exactly the same tests form a consensus set;
its score is (#candidates in the set) x (#tests it passes), which rewards a program that both many
samples agree with and many tests confirm. Generated tests are untrusted code: they run only in the
sandbox, each candidate once with all tests, candidates concurrently.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import Field

from thinktank._aio import gather_all
from thinktank.engine.engine import Context
from thinktank.kinds import kind_of
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, MaxTokens, Technique, Temperature
from thinktank.types import GenerationRequest

PROMPT = """Write {k} different unit tests for the Python function below as assert statements. Each assert calls \
`{entry_point}` with concrete arguments and compares the result with the expected value. Do not implement the function. \
Reply with the asserts only, one per line, in a single ```python block.

{problem}"""

_BLOCK = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def _free_names(node: ast.AST) -> set[str]:
    """Names an assert reads without binding them itself (comprehension targets and lambda args are bound)."""
    loaded: set[str] = set()
    bound: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            (loaded if isinstance(n.ctx, ast.Load) else bound).add(n.id)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
    return loaded - bound


def _prompt_names(code_prompt: str) -> set[str]:
    """Top-level imports and definitions of the prompt, which every extracted program carries along."""
    try:
        tree = ast.parse(code_prompt)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def parse_asserts(text: str, entry_point: str, known_names: Iterable[str] = ()) -> list[str]:
    """Distinct, parseable asserts that call `entry_point` and use no undefined name, in order of appearance."""
    found: list[ast.Assert] = []
    for block in _BLOCK.findall(text):  # whole blocks catch multi-line asserts and asserts inside test functions
        with contextlib.suppress(SyntaxError):
            found += sorted((n for n in ast.walk(ast.parse(block)) if isinstance(n, ast.Assert)), key=lambda n: n.lineno)
    lines = text.splitlines()
    for i, line in enumerate(lines):  # bare lines, and blocks that do not parse (e.g. cut off at max_tokens)
        if not line.lstrip().startswith("assert"):
            continue
        for end in range(i + 1, min(i + 8, len(lines)) + 1):
            try:
                body = ast.parse("\n".join([line.lstrip(), *lines[i + 1 : end]])).body
            except SyntaxError:
                continue
            found += [body[0]] if len(body) == 1 and isinstance(body[0], ast.Assert) else []
            break
    allowed = set(dir(builtins)) | set(known_names) | {entry_point}
    tests: dict[str, None] = {}
    for node in found:
        calls = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == entry_point for n in ast.walk(node))
        if calls and _free_names(node) <= allowed:
            tests.setdefault(ast.unparse(node), None)
    return list(tests)


def tests_from_replies(task: TaskInput, replies: Iterable[str], max_tests: int = 100) -> list[str]:
    """The tests `write_tests` keeps from test-writing replies: parsed asserts, deduplicated in reply order, capped.

    Deduplication keeps first occurrences, so the tests from the first k replies are a prefix of those from more.
    """
    known = _prompt_names(str(task.meta.get("code_prompt") or ""))
    tests = dict.fromkeys(t for text in replies for t in parse_asserts(text, task.entry_point or "", known))
    return list(tests)[:max_tests]


def dual_agreement(signatures: Sequence[frozenset[int]]) -> list[float]:
    """CodeT's score per candidate from the set of tests each passes: (#candidates passing exactly that set) x (#tests in it).

    Candidates ranked by it, stably (ties keep their order), give `GenTests`' order.
    """
    members: Counter[frozenset[int]] = Counter(signatures)
    return [float(members[key] * len(key)) for key in signatures]


class GenTests(Technique):
    name = "gen_tests"

    def __init__(
        self,
        models: list[str],
        *,
        n_tests: Annotated[int, Field(ge=1, le=64)] = 4,
        tests_per_reply: Annotated[int, Field(ge=1, le=20)] = 5,
        max_tests: Annotated[int, Field(ge=1, le=500)] = 100,
        temperature: Temperature = 0.8,
        max_tokens: MaxTokens = 512,
        seed: int = 0,
    ) -> None:
        """`n_tests` test-writing replies per model, each asked for `tests_per_reply` asserts; at most `max_tests` run."""
        if not models:
            raise ValueError("gen_tests needs at least one model")
        self.models, self.n_tests, self.tests_per_reply, self.max_tests = models, n_tests, tests_per_reply, max_tests
        self.temperature, self.max_tokens, self.seed = temperature, max_tokens, seed

    async def write_tests(self, ctx: Context, task: TaskInput) -> list[str]:
        code_prompt = str(task.meta.get("code_prompt") or "")
        problem = f"```python\n{code_prompt.strip()}\n```" if code_prompt.strip() else task.prompt
        content = PROMPT.format(k=self.tests_per_reply, entry_point=task.entry_point, problem=problem)
        requests = [
            GenerationRequest([{"role": "user", "content": content}], model, n=self.n_tests, temperature=self.temperature,
                              max_tokens=self.max_tokens, seed=self.seed)
            for model in self.models
        ]  # fmt: skip
        replies = [c.text for batch in await gather_all(ctx.generate(r) for r in requests) for c in batch]
        ctx.node.notes["replies"] = len(replies)
        return tests_from_replies(task, replies, self.max_tests)

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        notes = ctx.node.notes
        if not kind_of(task).takes_unit_tests(task):
            notes["skipped"] = f"generated tests need a code task with an entry point (got {task.kind}); order unchanged"
            return candidates
        distinct = [a for a in dict.fromkeys(c.answer for c in candidates) if a]
        if len(distinct) < 2:  # tests cannot tell one program from itself: spend nothing, rank as they would
            notes["skipped"] = f"{len(distinct)} distinct program(s): nothing for tests to tell apart, none written"
            return sorted(candidates, key=lambda c: not c.answer)  # stable: programs before unanswered candidates
        tests = await self.write_tests(ctx, task)
        notes["tests"] = tests
        if not tests:
            notes["skipped"] = "no usable assert calling the entry point could be parsed from the replies; order unchanged"
            return candidates
        kind = kind_of(task)
        verdicts = await gather_all(kind.run_unit_tests(ctx.resources, task, a, tests) for a in distinct)
        passed = {
            a: frozenset(i for i, ok in enumerate(v.details["results"]) if ok) for a, v in zip(distinct, verdicts, strict=True)
        }
        signature = [passed.get(c.answer or "", frozenset()) for c in candidates]
        members: dict[frozenset[int], list[int]] = defaultdict(list)
        for index, tests_passed in enumerate(signature):
            members[tests_passed].append(index)
        scores = dual_agreement(signature)
        group_score = {key: int(scores[idx[0]]) for key, idx in members.items()}
        for candidate, score in zip(candidates, scores, strict=True):
            candidate.scores[self.name] = score
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])
        notes.update(
            passes=["".join("1" if t in key else "." for t in range(len(tests))) for key in signature],  # row per candidate
            groups=[
                {"candidates": idx, "tests_passed": sorted(key), "score": group_score[key]}
                for key, idx in sorted(members.items(), key=lambda item: -group_score[item[0]])
            ],
            order=order,
        )
        return [candidates[i] for i in order]
