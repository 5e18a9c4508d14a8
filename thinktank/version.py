"""The installed version: pyproject.toml is the one place it is written, the package metadata carries it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("thinktank")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
