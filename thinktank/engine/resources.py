"""The run's shared helpers (sandbox, SQL verifier, ...): one instance per class, made on first use.

The engine holds a `Resources` so every query of a run shares one sandbox worker pool and one
set of synthesised databases, without the engine knowing what those helpers are: it only ever
sees classes. Nothing is created until someone asks, so a math-only run never starts a sandbox.

    resources = Resources()
    resources.provide(SqlVerifier(k=1))       # a configured instance instead of the default one
    sandbox = resources.get(PythonSandbox)    # created now, the same object on every later call
    await resources.aclose()                  # closes whatever was created that can be closed
"""

from __future__ import annotations

import inspect
from typing import TypeVar

__all__ = ["Resources"]

T = TypeVar("T")


class Resources:
    def __init__(self) -> None:
        self._made: dict[type, object] = {}

    def get(self, cls: type[T]) -> T:
        """The run's instance of `cls`, made with `cls()` the first time (so `cls` needs a no-argument constructor)."""
        found = self._made.get(cls)
        if found is None:
            found = self._made[cls] = cls()
        if not isinstance(found, cls):  # provide() keys by the exact class, so this cannot happen
            raise TypeError(f"resource registered for {cls.__name__} is a {type(found).__name__}")
        return found

    def provide(self, instance: object) -> None:
        """Use `instance` for its class from now on (e.g. a verifier with non-default settings, or a test double)."""
        self._made[type(instance)] = instance

    async def aclose(self) -> None:
        """Close every instance made or provided that has `aclose()` or `close()`; the holder is empty afterwards."""
        made, self._made = list(self._made.values()), {}
        for instance in made:
            close = getattr(instance, "aclose", None) or getattr(instance, "close", None)
            if close is not None:
                result = close()
                if inspect.isawaitable(result):
                    await result
