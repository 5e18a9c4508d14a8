"""The one error tree: every exception class thinktank defines derives from ThinktankError and is drawn in
the tree at the top of thinktank/exceptions.py, under its real parent."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import thinktank
from thinktank import exceptions
from thinktank.exceptions import ThinktankError

_NODE = re.compile(r"^(?P<indent>[\s│]*)(?:[├└]── )?(?P<name>[A-Z]\w*)\b")


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every public exception class defined in a thinktank module (not merely imported there), by name.

    A private one (`_Missing` in search/replay.py) is a control-flow signal caught inside its module; no
    caller ever sees it, so it is not part of the tree that callers catch.
    """
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(thinktank.__path__, "thinktank."):
        if info.name.endswith(".__main__"):  # `python -m` entry points run on import and define nothing
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == info.name
                and not name.startswith("_")
            ):
                assert name not in found, f"two exception classes named {name}: {found[name]} and {obj}"
                found[name] = obj
    return found


def drawn_tree() -> dict[str, str | None]:
    """Each class drawn in the docstring tree, mapped to the class drawn as its parent (None for the root)."""
    doc = exceptions.__doc__ or ""
    parents: dict[str, str | None] = {}
    path: list[str] = []  # the drawn ancestors of the line being read, by depth
    for line in doc.splitlines():
        if not line.startswith("    ") or not (match := _NODE.match(line[4:])):
            continue
        depth = len(match["indent"]) // 4 + (1 if "──" in line else 0)
        del path[depth:]
        parents[match["name"]] = path[-1] if path else None
        path.append(match["name"])
    return parents


def test_the_tree_is_drawn_from_the_root() -> None:
    tree = drawn_tree()
    assert tree["ThinktankError"] is None
    assert [name for name, parent in tree.items() if parent is None] == ["ThinktankError"]
    assert tree["ContextLengthExceeded"] == "BackendStatusError"  # the drawing's depth is read right


@pytest.mark.parametrize("name", sorted(defined_exceptions()))
def test_every_exception_is_in_the_tree_under_its_parent(name: str) -> None:
    cls = defined_exceptions()[name]
    assert issubclass(cls, ThinktankError), f"{cls.__module__}.{name} does not derive from ThinktankError"
    tree = drawn_tree()
    assert name in tree, f"{cls.__module__}.{name} is not drawn in the tree in thinktank/exceptions.py"
    if cls is not ThinktankError:
        assert tree[name] == cls.__bases__[0].__name__, f"{name} is drawn under {tree[name]}"


def test_every_drawn_class_exists() -> None:
    assert set(drawn_tree()) <= set(defined_exceptions())


def test_the_moved_errors_keep_their_old_import_paths() -> None:
    from thinktank._packages import PackageFetchError
    from thinktank.eval.store import StoreError

    assert PackageFetchError is exceptions.PackageFetchError and StoreError is exceptions.StoreError
