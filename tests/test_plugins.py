"""User techniques and tasks named by import path (`package.module:Class`), without editing thinktank."""

import pytest

from thinktank.arch import build_architecture, technique_class
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.exceptions import ConfigError
from thinktank.plugins import is_import_path, resolve_class
from thinktank.tasks.base import Task, TaskInput
from thinktank.tasks.registry import get_task
from thinktank.techniques.base import Technique


def test_import_paths_are_told_from_short_names():
    assert is_import_path("pkg.mod:Cls") and is_import_path("pkg.mod:Outer.Inner")
    assert not any(map(is_import_path, ["generate", "gsm-symbolic", ":Cls", "pkg:", "a:b:c"]))


async def test_a_yaml_architecture_uses_a_plugin_technique_with_validated_parameters():
    spec = {"layers": [{"generate": {}}, {"plugin_example:Shout": {"suffix": "?"}}]}
    arch = build_architecture(spec, ["m"])
    result = await arch.run(TaskInput("p", "math", "q"), Engine({"m": ScriptedBackend(lambda r, i: "#### ab")}).context())
    assert result.answer.answer == "AB?" and result.answer.node == "plugin_example:Shout1"
    with pytest.raises(ConfigError, match=r"<spec>:.*parameter 'suffix' of Shout"):
        build_architecture({"layers": [{"plugin_example:Shout": {"suffix": 3}}]}, ["m"])


def test_a_plugin_task_loads_by_import_path():
    problems = get_task("plugin_example:TinyTask", n=3).load()
    assert [p.id for p in problems] == ["tiny/0", "tiny/1", "tiny/2"]
    with pytest.raises(ConfigError, match="bad options for task"):
        get_task("plugin_example:TinyTask", colour="red")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_such_module_xyz:Thing", r"'no_such_module_xyz:Thing': cannot import no_such_module_xyz"),
        ("plugin_example:Missing", r"plugin_example has no attribute 'Missing'"),
        ("plugin_example:NOT_A_CLASS", r"NOT_A_CLASS is not a subclass of thinktank.techniques.base.Technique"),
        ("plugin_example:TinyTask", r"TinyTask is not a subclass of thinktank.techniques.base.Technique"),
    ],
)
def test_bad_technique_paths_are_config_errors(path, message):
    with pytest.raises(ConfigError, match=message):
        technique_class(path)
    with pytest.raises(ConfigError, match=r"arch.yaml:1: technique"):
        build_architecture({"layers": [{path: {}}]}, ["m"], source="arch.yaml", lines={("layers", 0): 1})


def test_a_technique_is_not_a_task():
    with pytest.raises(ConfigError, match=r"task 'plugin_example:Shout': Shout is not a subclass of thinktank.tasks.base.Task"):
        get_task("plugin_example:Shout")
    assert resolve_class("plugin_example:TinyTask", Task, what="task").name == "tiny"
    assert issubclass(resolve_class("plugin_example:Shout", Technique, what="technique"), Technique)
    with pytest.raises(ConfigError, match="expected an import path"):
        resolve_class("generate", Technique, what="technique")
