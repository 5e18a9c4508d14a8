import pytest

from thinktank.backends import llama_build
from thinktank.exceptions import BuildError


def test_cpu_key_is_stable_and_short():
    assert llama_build.cpu_key() == llama_build.cpu_key()
    assert len(llama_build.cpu_key()) == 12


def test_foreign_cmake_cache_is_dropped_own_is_kept(tmp_path):
    source, build = tmp_path / "src", tmp_path / "build"
    source.mkdir()
    build.mkdir()
    (build / "CMakeCache.txt").write_text(f"CMAKE_HOME_DIRECTORY:INTERNAL={source}\n")
    llama_build._drop_foreign_cmake_cache(build, source)
    assert (build / "CMakeCache.txt").exists()
    (build / "CMakeCache.txt").write_text("CMAKE_HOME_DIRECTORY:INTERNAL=/somewhere/else\n")
    llama_build._drop_foreign_cmake_cache(build, source)
    assert not build.exists()


def test_failed_build_step_names_the_log(tmp_path):
    log = tmp_path / "build.log"
    with pytest.raises(BuildError, match=f"build log: {log}"):
        llama_build._run_logged(["sh", "-c", "echo compiling; echo boom >&2; exit 3"], log, None)
    assert "boom" in log.read_text() and "compiling" in log.read_text()


def test_missing_toolchain_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path))
    monkeypatch.setattr(llama_build.shutil, "which", lambda tool: None)
    with pytest.raises(BuildError, match="needs `cmake`"):
        llama_build.ensure_llama_server()
