"""Task registry: names, options, JSONL paths, and lazy imports that keep one broken task from breaking all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from thinktank.exceptions import ConfigError, UnknownTaskError
from thinktank.tasks import registry
from thinktank.tasks.gsm_symbolic import GsmSymbolicTask
from thinktank.tasks.humaneval import HumanEvalTask
from thinktank.tasks.jsonl import JsonlTask
from thinktank.tasks.registry import get_task, task_names


def test_names() -> None:
    assert task_names() == ["gsm-symbolic", "humaneval", "jsonl", "rag-synth", "rag-synth-positioned", "spider"]


def test_builds_tasks_with_options() -> None:
    task = get_task("gsm-symbolic", n=3, seed=4)
    assert isinstance(task, GsmSymbolicTask) and [p.id for p in task.problems()] == [
        p.id for p in GsmSymbolicTask(3, 4).problems()
    ]
    assert isinstance(get_task("humaneval"), HumanEvalTask)


def test_jsonl_by_name_or_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"id": "q", "kind": "text", "prompt": "Hi?", "hidden": {"answer": "hello"}}) + "\n")
    by_path = get_task(str(path))
    by_name = get_task("jsonl", path=path, name="custom")
    assert isinstance(by_path, JsonlTask) and by_path.name == "mine"
    assert by_name.name == "custom" and [p.id for p in by_name.load()] == ["q"]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownTaskError) as info:
        get_task("mbpp")
    assert isinstance(info.value, ConfigError)
    assert "'mbpp'" in str(info.value) and all(name in str(info.value) for name in task_names())


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="bad options for task 'humaneval'"):
        get_task("humaneval", shuffle=True)


def test_a_missing_module_breaks_only_its_own_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._REGISTRY, "ghost", "thinktank.tasks.no_such_module:GhostTask")
    monkeypatch.setitem(registry._REGISTRY, "hollow", "thinktank.tasks.jsonl:NoSuchClass")
    assert "ghost" in task_names()
    with pytest.raises(ConfigError, match="thinktank.tasks.no_such_module cannot be imported"):
        get_task("ghost")
    with pytest.raises(ConfigError, match="has no NoSuchClass"):
        get_task("hollow")
    assert isinstance(get_task("gsm-symbolic", n=1), GsmSymbolicTask)


def test_spider_resolves_or_fails_cleanly() -> None:
    """Spider lives in another module; until it exists, asking for it must be a clear ConfigError."""
    try:
        task = get_task("spider")
    except ConfigError as exc:
        assert "spider" in str(exc)
    else:
        assert task.name == "spider"


def test_importing_the_registry_imports_no_task() -> None:
    code = "import sys, thinktank.tasks.registry; print(sorted(m for m in sys.modules if m.startswith('thinktank.tasks.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == ["thinktank.tasks.base", "thinktank.tasks.registry"]


def test_eval_and_search_load_the_same_generated_problems():
    """`search --seed S` splits what `eval --sample dev+test --seed S` runs: one source of gsm-symbolic's options."""
    from thinktank.search.study import split_problems
    from thinktank.tasks.gsm_symbolic import DEFAULT_N, generation_options

    dev, test = split_problems(registry.load_problems("gsm-symbolic", seed=3), 10, 10, 3)
    sampled = registry.load_problems("gsm-symbolic", seed=3, sample=20)
    assert [p.id for p in dev + test] == [p.id for p in sampled]
    assert generation_options(3) == {"seed": 3, "n": DEFAULT_N}
    assert generation_options(3, needed=DEFAULT_N + 50)["n"] == DEFAULT_N + 50  # a slice past the default grows it
    sliced = registry.load_problems("gsm-symbolic", seed=3, offset=DEFAULT_N, limit=5)
    assert len(sliced) == 5 and sliced[0].id == GsmSymbolicTask(n=DEFAULT_N + 5, seed=3).load()[DEFAULT_N].id
