"""The shared pieces of the command line: one error -> exit status mapping, one model-name rule."""

import pytest

from thinktank.cli.common import exit_code, served_names
from thinktank.exceptions import ConfigError, ThinktankError


def test_one_mapping_from_errors_to_exit_codes():
    assert exit_code(ConfigError("x")) == 2 and exit_code(ThinktankError("x")) == 2
    assert exit_code(KeyboardInterrupt()) == 130
    assert exit_code(RuntimeError("a bug")) is None  # a traceback, not a tidy exit


def test_main_ends_a_known_error_with_its_code(monkeypatch, capsys):
    from thinktank.cli import commands

    def fail():
        raise ConfigError("no such preset")

    monkeypatch.setattr(commands, "app", fail)
    with pytest.raises(SystemExit) as exit_info:
        commands.main()
    assert exit_info.value.code == 2 and "no such preset" in capsys.readouterr().err


def test_served_names_are_labels_locally_and_as_given_remotely():
    assert served_names(["models/tiny.gguf", "qwen2.5-coder-0.5b-instruct"], None) == ["tiny", "qwen2.5-coder-0.5b-instruct"]
    assert served_names(["models/tiny.gguf"], "http://host/v1") == ["models/tiny.gguf"]


def test_version_prints_the_installed_version_and_exits_zero():
    import subprocess
    import sys
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    done = subprocess.run([sys.executable, "-m", "thinktank.cli", "--version"], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, f"thinktank {pyproject['project']['version']}\n")
    helped = subprocess.run([sys.executable, "-m", "thinktank.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--version" in helped.stdout and "compose inference-time techniques" in helped.stdout
