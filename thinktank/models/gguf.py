"""A GGUF file's tokenizer, read from its metadata header, and whether a draft model's matches a target's.

    reason = vocab_mismatch(read_vocab(target_path), read_vocab(draft_path))   # None: the draft may draft

Speculative decoding proposes the draft model's token ids to the target model, so the two must number their
tokens the same way. The rule is llama.cpp's own (`common_speculative_are_compatible`): the same tokenizer
type, the same BOS/EOS handling, sizes within 128 tokens of each other, and the same text for every token
from id 5 up to the smaller size. llama-server applies it only after both models are loaded, and on a
mismatch drops *all* speculation (n-gram too) with an error line in its log; checking the header first
lets thinktank refuse just the draft, with the reason, before any memory is spent on it.

Only the metadata is read (the token list is ~2 MB for a 150k vocabulary); other arrays are skipped.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from thinktank.exceptions import ModelPackError

# llama.cpp's common/speculative.cpp: SPEC_VOCAB_MAX_SIZE_DIFFERENCE and SPEC_VOCAB_CHECK_START_TOKEN_ID
MAX_SIZE_DIFFERENCE = 128
CHECK_START_TOKEN_ID = 5

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_WANTED = {
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
}


@dataclass(frozen=True)
class Vocab:
    """What decides whether two models number their tokens alike."""

    path: Path
    model: str  # tokenizer type: gpt2 (BPE), llama (SentencePiece), …
    pre: str | None  # pre-tokenizer, e.g. qwen2
    tokens: tuple[str, ...]
    bos: int | None
    eos: int | None
    add_bos: bool
    add_eos: bool

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def checksum(self) -> str:
        """sha256 of the token texts in id order: equal checksums, equal vocabularies."""
        return hashlib.sha256("\0".join(self.tokens).encode("utf-8", "surrogateescape")).hexdigest()


def read_vocab(path: Path) -> Vocab:
    """The tokenizer a GGUF file declares in its metadata; ModelPackError if the header is not readable GGUF."""
    try:
        with open(path, "rb") as f:
            meta = _read_metadata(f)
    except (OSError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise ModelPackError(f"cannot read the GGUF metadata of {path}: {exc}") from exc
    tokens = meta.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens:
        raise ModelPackError(f"{path} declares no tokenizer (no tokenizer.ggml.tokens in its GGUF metadata)")
    add_eos = meta.get("tokenizer.ggml.add_eos_token")
    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    return Vocab(
        path=path,
        model=str(meta.get("tokenizer.ggml.model", "")),
        pre=_str_or_none(meta.get("tokenizer.ggml.pre")),
        tokens=tuple(str(t) for t in tokens),
        bos=_int_or_none(meta.get("tokenizer.ggml.bos_token_id")),
        eos=_int_or_none(meta.get("tokenizer.ggml.eos_token_id")),
        # llama.cpp's defaults when a file leaves them out: BOS added for SentencePiece vocabularies, EOS never
        add_bos=bool(add_bos) if add_bos is not None else meta.get("tokenizer.ggml.model") == "llama",
        add_eos=bool(add_eos) if add_eos is not None else False,
    )


def vocab_mismatch(target: Vocab, draft: Vocab) -> str | None:
    """Why `draft` cannot draft for `target` (llama.cpp's rule), or None when it can."""
    if target.model != draft.model:
        return f"tokenizer type {draft.model!r} differs from the target's {target.model!r}"
    if target.add_bos != draft.add_bos or (target.add_bos and target.bos != draft.bos):
        return f"BOS handling differs (add_bos {draft.add_bos}, id {draft.bos} vs the target's {target.add_bos}, {target.bos})"
    if target.add_eos != draft.add_eos or (target.add_eos and target.eos != draft.eos):
        return f"EOS handling differs (add_eos {draft.add_eos}, id {draft.eos} vs the target's {target.add_eos}, {target.eos})"
    if abs(target.size - draft.size) > MAX_SIZE_DIFFERENCE:
        return f"vocabulary size {draft.size} differs from the target's {target.size} by more than {MAX_SIZE_DIFFERENCE}"
    for token_id in range(CHECK_START_TOKEN_ID, min(target.size, draft.size)):
        if target.tokens[token_id] != draft.tokens[token_id]:
            return f"token {token_id} is {draft.tokens[token_id]!r} in the draft but {target.tokens[token_id]!r} in the target"
    return None


def _read_metadata(f: BinaryIO) -> dict[str, object]:
    if f.read(4) != b"GGUF":
        raise ValueError("not a GGUF file (bad magic)")
    version = _unpack(f, "I")
    if version < 2:
        raise ValueError(f"GGUF version {version} is too old (2 or later is read)")
    _unpack(f, "Q")  # tensor count
    meta: dict[str, object] = {}
    for _ in range(_unpack(f, "Q")):
        key = _read_string(f)
        kind = _unpack(f, "I")
        if key in _WANTED:
            meta[key] = _read_value(f, kind)
        else:
            _skip_value(f, kind)
    return meta


def _unpack(f: BinaryIO, fmt: str) -> int:
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    value: int = struct.unpack("<" + fmt, data)[0]
    return value


def _read_string(f: BinaryIO) -> str:
    length = _unpack(f, "Q")
    data = f.read(length)
    if len(data) != length:
        raise ValueError("truncated GGUF header")
    return data.decode("utf-8", "surrogateescape")


def _read_value(f: BinaryIO, kind: int) -> object:
    if kind in _SCALARS:
        size = struct.calcsize("<" + _SCALARS[kind])
        data = f.read(size)
        if len(data) != size:
            raise ValueError("truncated GGUF header")
        return struct.unpack("<" + _SCALARS[kind], data)[0]
    if kind == _STRING:
        return _read_string(f)
    if kind == _ARRAY:
        item_kind, count = _unpack(f, "I"), _unpack(f, "Q")
        return [_read_value(f, item_kind) for _ in range(count)]
    raise ValueError(f"unknown GGUF metadata type {kind}")


def _skip_value(f: BinaryIO, kind: int) -> None:
    if kind in _SCALARS:
        f.seek(struct.calcsize("<" + _SCALARS[kind]), 1)
    elif kind == _STRING:
        f.seek(_unpack(f, "Q"), 1)
    elif kind == _ARRAY:
        item_kind, count = _unpack(f, "I"), _unpack(f, "Q")
        if item_kind in _SCALARS:
            f.seek(count * struct.calcsize("<" + _SCALARS[item_kind]), 1)
        else:
            for _ in range(count):
                _skip_value(f, item_kind)
    else:
        raise ValueError(f"unknown GGUF metadata type {kind}")


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
