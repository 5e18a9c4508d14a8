import re

from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.tasks.answers import extract
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate
from thinktank.techniques.fuse import Fuse

TASK = TaskInput("p1", "math", "Add up the numbers. End with #### <number>.")
CODE = TaskInput(
    "p2", "code", "Implement add.", entry_point="add", meta={"code_prompt": "import math\n\ndef add(a, b):\n    pass\n"}
)


def cand(text: str, task: TaskInput = TASK) -> Candidate:
    return Candidate(text, extract(task, text), "m", "gen")


def fuse(**kwargs) -> Fuse:
    technique = Fuse("fuser", **kwargs)
    technique.name = "fuse2"
    return technique


def summing_fuser(request, _i):
    """Builds its answer from the candidates it was shown: the sum of their final answers."""
    prompt = request.messages[-1]["content"]
    shown = [int(v) for v in re.findall(r"^\[\d+\]\n.*?#### (\d+)", prompt, re.MULTILINE | re.DOTALL)]
    return f"Combining {len(shown)} candidates.\n#### {sum(shown)}"


async def test_fuse_replaces_candidates_with_one_built_from_the_prompt():
    backend = ScriptedBackend(summing_fuser)
    ctx = Engine({"fuser": backend}).context()
    candidates = [cand("#### 3"), cand("three, so\n#### 3"), cand("#### 4")]
    out = await fuse().apply(ctx, TASK, candidates)
    assert len(out) == 1 and out[0] not in candidates
    assert (out[0].answer, out[0].node, out[0].model) == ("7", "fuse2", "fuser")  # 3 + 4: the duplicate 3 shown once
    assert ctx.node.notes["inputs"] == [0, 2]
    prompt = backend.requests[0].messages[-1]["content"]
    assert "Add up the numbers." in prompt and 'end with a final line "#### <answer>"' in prompt
    assert out[0].usage.calls == 1


async def test_fuse_caps_the_candidates_it_shows():
    backend = ScriptedBackend(summing_fuser)
    ctx = Engine({"fuser": backend}).context()
    candidates = [cand(f"#### {k}") for k in (1, 2, 3, 4, 5)]
    out = await fuse(max_candidates=3).apply(ctx, TASK, candidates)
    assert out[0].answer == "6"
    assert ctx.node.notes["inputs"] == [0, 1, 2] and ctx.node.notes["dropped"] == [3, 4]
    assert "[4]" not in backend.requests[0].messages[-1]["content"]


async def test_single_distinct_candidate_is_returned_without_a_call():
    backend = ScriptedBackend(summing_fuser)
    ctx = Engine({"fuser": backend}).context()
    candidates = [cand("#### 42"), cand("it is 42.0\n#### 42.0")]
    assert await fuse().apply(ctx, TASK, candidates) == [candidates[0]]
    assert backend.requests == [] and "without fusing" in ctx.node.notes["skipped"]
    assert await fuse().apply(ctx, TASK, []) == []


async def test_n_fused_samples_and_answerless_ones_go_last():
    def fuser(request, _i):
        return "I am not sure." if request.seed == 0 else "#### 9"

    ctx = Engine({"fuser": ScriptedBackend(fuser)}).context()
    out = await fuse(n=2, temperature=0.7).apply(ctx, TASK, [cand("#### 4"), cand("#### 5")])
    assert [c.answer for c in out] == ["9", None]
    assert ctx.node.notes["without_answer"] == 1


async def test_code_fusion_shows_programs_and_asks_for_a_python_block():
    def fuser(request, _i):
        prompt = request.messages[-1]["content"]
        assert "return a + b" in prompt and "return a - b" in prompt and "```python" in prompt
        assert "function `add`" in prompt
        return "```python\ndef add(a, b):\n    return a + b\n```"

    ctx = Engine({"fuser": ScriptedBackend(fuser)}).context()
    wrong = cand("```python\ndef add(a, b):\n    return a - b\n```", CODE)
    right = cand("Here:\n```python\ndef add(a, b):\n    return a + b\n```", CODE)
    (out,) = await fuse().apply(ctx, CODE, [wrong, right])
    assert "return a + b" in out.answer and "import math" in out.answer  # extracted like any code reply
