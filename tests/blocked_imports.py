"""`block_import(monkeypatch, "psycopg")`: from here on, importing that package (or a submodule) raises, as on a
machine without the extra (or with a broken install: pass the exception to raise). `import` consults
`builtins.__import__` even for a module already loaded, so nothing is removed from sys.modules."""

from __future__ import annotations

import builtins

import pytest


def block_import(monkeypatch: pytest.MonkeyPatch, package: str, error: BaseException | None = None) -> None:
    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == package or name.startswith(package + "."):
            raise error or ImportError(f"No module named {package!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)
