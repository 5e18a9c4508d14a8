"""One version source: pyproject.toml, read back through the installed metadata by the package and the server."""

from __future__ import annotations

import tomllib
from pathlib import Path

import thinktank
from thinktank.arch import build_architecture
from thinktank.engine import Engine
from thinktank.serve import create_app

from .conftest import SPECS, WordStreamBackend, numbered, serving

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def pyproject_version() -> str:
    return str(tomllib.loads(PYPROJECT.read_text())["project"]["version"])


def test_the_package_version_is_pyprojects():
    assert thinktank.__version__ == pyproject_version()


def test_no_module_writes_the_version_again():
    literal = f'"{pyproject_version()}"'
    package = Path(thinktank.__file__).parent
    assert [str(p.relative_to(package)) for p in package.rglob("*.py") if literal in p.read_text()] == []


def test_the_server_reports_the_package_version():
    app = create_app(Engine({"m": WordStreamBackend(numbered)}), [build_architecture(SPECS["single"], ["m"])])
    assert app.version == thinktank.__version__
    with serving(WordStreamBackend(numbered)) as live, live.http() as http:
        assert http.get("/openapi.json").json()["info"]["version"] == thinktank.__version__
