"""Name a class by import path, `package.module:Class`, so users extend thinktank without editing it.

    layers:
      - my_package.techniques:BeamSearch: {width: 4}

    thinktank eval --task my_package.tasks:MyTask ...

The technique registry (`arch.py`) and the task registry (`tasks/registry.py`) keep their short names and resolve
anything with a colon here. Each failure is a `ConfigError` that says which part of the path is wrong.
"""

from __future__ import annotations

import importlib
from typing import TypeVar

from thinktank.exceptions import ConfigError

__all__ = ["is_import_path", "resolve_class"]

T = TypeVar("T")


def is_import_path(name: str) -> bool:
    """`package.module:Class` (one colon, both sides non-empty); short registry names have no colon."""
    module, sep, attr = name.partition(":")
    return bool(sep and module and attr) and ":" not in attr


def resolve_class(path: str, base: type[T], *, what: str) -> type[T]:
    """Import `package.module:Class` and check that it is a subclass of `base`; `what` names it in errors."""
    if not is_import_path(path):
        raise ConfigError(f"{what} {path!r}: expected an import path 'package.module:Class'")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what} {path!r}: cannot import {module_name}: {exc}") from exc
    found = module
    for part in attr.split("."):  # a nested class: module:Outer.Inner
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigError(f"{what} {path!r}: {module_name} has no attribute {attr!r}") from None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ConfigError(f"{what} {path!r}: {attr} is not a subclass of {base.__module__}.{base.__qualname__}")
    return found
