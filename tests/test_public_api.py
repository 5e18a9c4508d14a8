"""The public API: every package's `__all__` is sorted and every name in it exists."""

import importlib

import pytest

PACKAGES = ["thinktank", "thinktank.backends", "thinktank.cluster", "thinktank.engine", "thinktank.eval", "thinktank.models",
            "thinktank.search", "thinktank.serve", "thinktank.tasks", "thinktank.techniques", "thinktank.telemetry", "thinktank.testing", "thinktank.verifiers"]  # fmt: skip


def isort_key(name):
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize("name", PACKAGES)
def test_exports_sorted_and_resolvable(name):
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported, key=isort_key)  # the order ruff's RUF022 keeps
    for attr in exported:
        assert getattr(module, attr) is not None


def test_cli_entry_point_exists():
    from thinktank.cli import app, main

    assert callable(main) and app.info.help
