"""The one place `ray` is imported: an optional extra, so a missing install is a clear error, not a traceback."""

from __future__ import annotations

from types import ModuleType

from thinktank.exceptions import ConfigError


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - the test venv has the extra
        raise ConfigError("--ray needs the ray extra: pip install 'thinktank[ray]' (on the driver and every node)") from exc
    return ray
