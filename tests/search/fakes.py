"""A small HumanEval-like task and scripted models whose replies depend only on the request (seeded, deterministic).

Problem i asks for `f{i}(x) = x + i`. Its public tests call f at 1 and 2; the hidden check also calls it at 10 and -3.
Programs a model writes, by variant:

* RIGHT     — x + i: passes everything;
* LUCKY     — right for x < 5 only: passes the public tests, fails the hidden ones (and agrees with RIGHT on the
              public inputs, so `vote` groups them);
* OFF       — x + i + 1: fails the public tests;
* TIMES     — x * 2 + i - 1: right at x = 1 only (public score 0.5).

Which variant a sample gets is a hash of (model, problem, seed); the "big" model is right more often than "small".
Test writers reply with asserts (some wrong), judges score the program they see, and repair fixes a program once it
has seen the failing assert (small only in round 2+).
"""

from __future__ import annotations

import hashlib
import re

from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.tasks.base import HiddenChecks, Problem, TaskInput

MODELS = ["small", "big"]


def program(i: int, variant: str) -> str:
    body = {
        "RIGHT": f"return x + {i}",
        "LUCKY": f"return x + {i} if x < 5 else 0",
        "OFF": f"return x + {i + 1}",
        "TIMES": f"return x * 2 + {i - 1}",
    }[variant]
    return f"def f{i}(x):\n    {body}\n"


def fence(code: str) -> str:
    return f"Here is my solution:\n```python\n{code}```\n"


def make_problem(i: int) -> Problem:
    code_prompt = f'def f{i}(x):\n    """Return x plus {i}."""\n'
    prompt = f"Complete the function.\n```python\n{code_prompt}```"
    public = (f"assert f{i}(1) == {1 + i}", f"assert f{i}(2) == {2 + i}")
    hidden = f"def check(candidate):\n    for x in (1, 2, 10, -3):\n        assert candidate(x) == x + {i}\n"
    task = TaskInput(f"p{i:02d}", "code", prompt, entry_point=f"f{i}", public_tests=public, meta={"code_prompt": code_prompt})
    return Problem(task, HiddenChecks(test_code=hidden))


def problems(count: int, start: int = 0) -> list[Problem]:
    return [make_problem(i) for i in range(start, start + count)]


def _roll(*parts: object) -> float:
    return int(hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def variant(model: str, i: int, seed: int, temperature: float) -> str:
    skill = 0.75 if model == "big" else 0.4
    if temperature == 0:
        return "RIGHT" if _roll(model, i, "greedy") < skill else "LUCKY" if i % 2 else "OFF"
    r = _roll(model, i, seed)
    return "RIGHT" if r < skill else "LUCKY" if r < skill + 0.15 else "OFF" if r < skill + 0.35 else "TIMES"


def reply(request, _index=None) -> str:
    """Every role of both models, decided by the request alone."""
    model, seed, prompt = request.model, request.seed or 0, request.messages[-1]["content"]
    i = int(re.search(r"def f(\d+)\(", prompt).group(1))
    if prompt.startswith("Write") and "unit tests" in prompt:  # gen_tests
        wrong = _roll(model, i, seed, "test") < 0.3
        return f"```python\nassert f{i}(3) == {3 + i + (1 if wrong else 0)}\nassert f{i}(10) == {10 + i}\n```"
    if prompt.startswith("Rate how well"):  # rank pointwise
        shown = prompt.split("Response:", 1)[1]
        score = 9 if f"return x + {i}\n" in shown else 6 if "x < 5" in shown else 3 if "x * 2" in shown else 2
        return f"Looks {'fine' if score > 5 else 'wrong'}.\nScore: {score if model == 'big' else min(9, score + 1)}"
    if "Your previous answer" in prompt:  # repair round (seed = round)
        fixed = "It fails this test" in prompt and (model == "big" or seed >= 2)
        return fence(program(i, "RIGHT" if fixed else "TIMES"))
    return fence(program(i, variant(model, i, seed, request.temperature)))


def engine(delay_s: float = 0.0, cache=None) -> tuple[Engine, dict[str, ScriptedBackend]]:
    backends = {m: ScriptedBackend(reply, delay_s=delay_s, name=m) for m in MODELS}
    return Engine(backends, cache=cache), backends
