"""The wheel ships what the source tree has: built as a release would be (`python -m build --wheel`), installed
into a clean venv (dependencies from the package index, through pip's cache), and run from outside the checkout.

Package data is found generically, by walking thinktank/ for every file that is not bytecode, so data added
later (presets, a UI's static files) is covered without editing this test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[1]


def source_files() -> set[str]:
    """Every file under thinktank/ a wheel must carry, as a path inside the wheel (no bytecode or caches)."""
    files = set()
    for path in (PROJECT / "thinktank").rglob("*"):
        relative = path.relative_to(PROJECT)
        if path.is_file() and "__pycache__" not in relative.parts and path.suffix not in (".pyc", ".pyo"):
            files.add(relative.as_posix())
    return files


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, f"{argv} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(PROJECT)], timeout=300)
    [built] = out.glob("thinktank-*.whl")
    return built


def test_the_wheel_carries_every_source_and_data_file(wheel):
    with zipfile.ZipFile(wheel) as zf:
        shipped = set(zf.namelist())
    data = {f for f in source_files() if not f.endswith(".py")}
    assert any(f.startswith("thinktank/presets/") and f.endswith(".yaml") for f in data)  # the walk sees package data
    assert sorted(data - shipped) == [], "package data missing from the wheel"
    assert sorted(source_files() - shipped) == [], "modules missing from the wheel"
    version = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["version"]
    assert wheel.name.startswith(f"thinktank-{version}-")


def test_the_installed_wheel_lists_the_presets_from_a_clean_venv(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, clear=True)
    python, script = env_dir / "bin" / "python", env_dir / "bin" / "thinktank"
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")} | {
        "THINKTANK_CACHE": str(tmp_path / "cache"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], env=env, cwd=tmp_path, timeout=600)
    located = run([str(python), "-c", "import thinktank; print(thinktank.__file__)"], env=env, cwd=tmp_path)
    assert Path(located.stdout.strip()).is_relative_to(env_dir)  # the installed copy, not the checkout
    listed = run([str(script), "archs"], env=env, cwd=tmp_path, timeout=120).stdout
    presets = sorted(path.stem for path in (PROJECT / "thinktank" / "presets").glob("*.yaml"))
    assert presets and [name for name in presets if name not in listed] == []
