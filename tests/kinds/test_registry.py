import subprocess
import sys

import pytest
from pydantic import ValidationError

import thinktank.kinds
from tests.kinds.toy import YesNoKind
from thinktank.arch import build_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.eval.grading import Grader
from thinktank.exceptions import ConfigError
from thinktank.kinds import KINDS, TaskKind, kind_named, kind_of, known_kind
from thinktank.serve.wire import ThinktankOptions
from thinktank.tasks.answers import extract
from thinktank.tasks.base import HiddenChecks, Problem, TaskInput
from thinktank.techniques._prompting import format_instruction


def test_every_task_kind_has_a_registered_strategy_of_that_name():
    assert set(KINDS) >= {"code", "sql", "math", "qa", "text"}
    for name in KINDS:
        kind = kind_named(name)
        assert isinstance(kind, TaskKind) and kind.name == name


def test_task_files_and_served_requests_accept_exactly_the_registered_kinds(monkeypatch):
    for name in KINDS:
        assert known_kind(name) == name and ThinktankOptions(kind=name).kind == name
    with pytest.raises(ValidationError, match="unknown task kind 'yesno'; known: code, math, qa, sql, text"):
        ThinktankOptions(kind="yesno")
    monkeypatch.setitem(thinktank.kinds.KINDS, "yesno", "tests.kinds.toy:YesNoKind")  # the one registry line
    assert ThinktankOptions(kind="yesno").kind == "yesno"


def test_an_unknown_kind_is_a_config_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match="unknown task kind 'poem'.*code, math, qa, sql, text"):
        kind_of(TaskInput("p", "poem", "Write a poem."))  # type: ignore[arg-type]


def test_a_registry_entry_that_is_not_a_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="not a TaskKind"):
        kind_named("x", {"x": "thinktank.kinds:KINDS"})


def test_a_math_only_run_imports_no_sandbox_and_no_sql():
    program = (
        "import asyncio, sys\n"
        "from thinktank.eval.grading import Grader\n"
        "from thinktank.search.pool import SamplePool\n"
        "from thinktank.techniques.vote import Vote\n"
        "from thinktank.tasks.base import HiddenChecks, Problem, TaskInput\n"
        "problem = Problem(TaskInput('m', 'math', '6*7?'), HiddenChecks(answer='42'))\n"
        "assert asyncio.run(Grader().grade(problem, '42')).passed\n"
        "loaded = [m for m in ('thinktank.verifiers.python_sandbox', 'thinktank.verifiers.sql') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True)


async def test_a_new_kind_is_one_module_plus_one_registry_line(monkeypatch):
    monkeypatch.setattr(thinktank.kinds, "KINDS", {**KINDS, "yesno": "tests.kinds.toy:YesNoKind"})
    task = TaskInput("q1", "yesno", "Is 7 prime?")  # type: ignore[arg-type]
    assert isinstance(kind_of(task), YesNoKind)
    assert format_instruction(task) == "Answer yes or no."
    assert extract(task, "Well... Yes, it is.") == "yes"

    replies = iter(["Yes.", "no", "YES, surely"])
    engine = Engine({"m": ScriptedBackend(lambda request, index: next(replies))})
    arch = build_architecture({"layers": [{"generate": {"n": 3, "temperature": 0.8}}, {"vote": {}}]}, ["m"])
    result = await arch.run(task, engine.context())
    assert result.answer.answer == "yes"  # two of three replies say yes, in different words
    verdict = await Grader(engine.resources).grade(Problem(task, HiddenChecks(answer="yes")), result.answer.answer)
    assert verdict.passed and verdict.reason == "right"
