"""Every shipped technique keeps the technique contract that `thinktank.testing` offers extenders."""

import pytest
from rag_fixtures import TASK as RAG_TASK
from rag_fixtures import passage_candidates

from thinktank.arch import build_architecture
from thinktank.exceptions import BudgetExceeded
from thinktank.tasks.base import TaskInput
from thinktank.techniques.adaptive import AdaptiveSample
from thinktank.techniques.base import Candidate, Technique
from thinktank.techniques.cascade import Cascade
from thinktank.techniques.critique import CritiqueRefine
from thinktank.techniques.fuse import Fuse
from thinktank.techniques.gen_tests import GenTests
from thinktank.techniques.generate import Generate
from thinktank.techniques.permute import Permute
from thinktank.techniques.program import Program
from thinktank.techniques.rank import Rank
from thinktank.techniques.read import Read
from thinktank.techniques.repair import Repair
from thinktank.techniques.rerank import Rerank
from thinktank.techniques.verify_exec import VerifyExec
from thinktank.techniques.vote import Vote
from thinktank.testing.technique_contract import TechniqueContract
from thinktank.types import GenerationRequest

CODE = TaskInput("c1", "code", "Write inc(x).", entry_point="inc", public_tests=("assert inc(1) == 2",))
WRONG, RIGHT = "```python\ndef inc(x):\n    return x * 2\n```", "```python\ndef inc(x):\n    return x + 1\n```"


class CodeContract(TechniqueContract):
    task = CODE

    def reply(self, request, sample_index):
        return "```python\nassert inc(2) == 3\n```\n" + RIGHT

    def make_candidates(self):
        return [Candidate(WRONG, WRONG.split("\n", 1)[1].rsplit("\n", 1)[0], self.model, "given"),
                Candidate(RIGHT, RIGHT.split("\n", 1)[1].rsplit("\n", 1)[0], self.model, "given")]  # fmt: skip


class TestGenerate(TechniqueContract):
    def make_technique(self):
        return Generate([self.model], n=3, temperature=0.8)


class TestAdaptive(TechniqueContract):
    def make_technique(self):
        return AdaptiveSample([self.model], max_n=4, wave=2)


class TestVote(TechniqueContract):
    def make_technique(self):
        return Vote()


class TestRank(TechniqueContract):
    def make_technique(self):
        return Rank(self.model)


class TestFuse(TechniqueContract):
    def make_technique(self):
        return Fuse(self.model)


class TestCritique(TechniqueContract):
    def make_technique(self):
        return CritiqueRefine(self.model)


class TestCascade(TechniqueContract):
    def make_technique(self):
        stage = {"layers": [{"generate": {"n": 2, "temperature": 0.8}}, {"vote": {}}]}
        return Cascade([build_architecture(stage, [self.model]) for _ in range(2)], [1.01])


class TestVerifyExec(CodeContract):
    def make_technique(self):
        return VerifyExec()


class TestGenTests(CodeContract):
    def make_technique(self):
        return GenTests([self.model], n_tests=2)


class TestRepair(CodeContract):
    def make_technique(self):
        return Repair(self.model, rounds=1)


class ProgramContract(TechniqueContract):
    def reply(self, request, sample_index):
        return "```python\ndef solution():\n    return 6 * 7\n```"


class TestProgram(ProgramContract):
    def make_technique(self):
        return Program([self.model], n=2, temperature=0.8, check_text=True)


class TestRepairProgram(ProgramContract):
    def make_technique(self):
        return Repair(self.model, rounds=1)

    def make_candidates(self):
        broken = "def solution():\n    return 42 / 0\n"
        return [Candidate(f"```python\n{broken}```", None, self.model, "given", program=broken)]


class RagContract(TechniqueContract):
    task = RAG_TASK

    def reply(self, request, sample_index):
        return "Relevance: 7\nspecificity: 0.5\nQuillmarsh"

    def make_candidates(self):
        return passage_candidates()


class TestRead(RagContract):
    def make_technique(self):
        return Read([self.model], n=2, temperature=0.8)


class TestPermute(RagContract):
    def make_technique(self):
        return Permute([self.model], m=3, final_call=True)


class TestAdaptivePermute(RagContract):
    def make_technique(self):
        generator = build_architecture({"layers": [{"permute": {}}]}, [self.model])
        return AdaptiveSample([self.model], max_n=4, wave=2, generator=[generator])


class TestRerank(RagContract):
    def make_technique(self):
        return Rerank(self.model, keep=3)


# --- the contract fails techniques that break it ------------------------------------------------------------


class Bypass(Technique):
    """Calls the backend directly: no trace, no usage, no budget."""

    async def apply(self, ctx, task, candidates):
        backend = ctx.engine.backend_for("m")
        await backend.generate(GenerationRequest.from_prompt(task.prompt, "m"))
        return candidates


class Swallow(Technique):
    """Turns a budget cut into another error."""

    async def apply(self, ctx, task, candidates):
        try:
            for _ in range(2):  # the second call is over a one-call budget
                await ctx.generate(GenerationRequest.from_prompt(task.prompt, "m"))
        except BudgetExceeded as exc:
            raise RuntimeError("out of budget") from exc
        return candidates


class Hoard(Technique):
    """Keeps candidates across calls and writes every node's score on them."""

    seen: list = []  # noqa: RUF012  (the shared state is the defect under test)

    async def apply(self, ctx, task, candidates):
        Hoard.seen.extend(candidates)
        for c in Hoard.seen:
            c.scores[self.name] = 1.0
        return Hoard.seen[-len(candidates) :]


def contract_for(cls):
    class Contract(TechniqueContract):
        def make_technique(self):
            return cls()

    return Contract()


@pytest.mark.parametrize(
    ("cls", "check", "message"),
    [
        (Bypass, "test_every_model_call_is_in_the_trace_and_the_usage", "bypassed the engine"),
        (Bypass, "test_no_call_once_the_budget_is_used_up", "after the budget was used up"),
        (Hoard, "test_nodes_of_one_layer_do_not_share_candidates", "both nodes' results"),
    ],
)
def test_the_contract_catches_a_broken_technique(cls, check, message):
    with pytest.raises(AssertionError, match=message):
        getattr(contract_for(cls), check)()


def test_the_contract_catches_a_swallowed_budget_cut():
    with pytest.raises(RuntimeError, match="out of budget"):
        contract_for(Swallow).test_a_budget_cut_ends_the_step_or_raises_budget_exceeded()
