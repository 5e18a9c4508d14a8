"""Write small GGUF files (metadata only, no tensors) for tests of code that reads GGUF headers."""

from __future__ import annotations

import struct
from pathlib import Path

# GGUF metadata value types
UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64 = 4, 5, 6, 7, 8, 9, 10


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _value(kind: int, value: object) -> bytes:
    if kind == STRING:
        assert isinstance(value, str)
        return _string(value)
    if kind == ARRAY:
        item_kind, items = value  # type: ignore[misc]
        return struct.pack("<IQ", item_kind, len(items)) + b"".join(_value(item_kind, v) for v in items)
    fmt = {UINT32: "I", INT32: "i", FLOAT32: "f", BOOL: "?", UINT64: "Q"}[kind]
    return struct.pack("<" + fmt, value)


def write_gguf(path: Path, metadata: dict[str, tuple[int, object]], version: int = 3) -> Path:
    """`metadata`: key -> (type, value); an array's value is (item type, items)."""
    out = b"GGUF" + struct.pack("<IQQ", version, 0, len(metadata))
    for key, (kind, value) in metadata.items():
        out += _string(key) + struct.pack("<I", kind) + _value(kind, value)
    path.write_bytes(out)
    return path


def tokenizer_gguf(
    path: Path, tokens: list[str], *, model: str = "gpt2", bos: int = 1, eos: int = 2, add_bos: bool = False
) -> Path:
    """A GGUF header with a tokenizer as llama.cpp writes one, and the other arrays a reader must skip."""
    return write_gguf(
        path,
        {
            "general.architecture": (STRING, "qwen2"),
            "qwen2.context_length": (UINT32, 32768),
            "general.scores": (ARRAY, (FLOAT32, [0.5] * len(tokens))),
            "tokenizer.ggml.model": (STRING, model),
            "tokenizer.ggml.pre": (STRING, "qwen2"),
            "tokenizer.ggml.tokens": (ARRAY, (STRING, tokens)),
            "tokenizer.ggml.token_type": (ARRAY, (INT32, [1] * len(tokens))),
            "tokenizer.ggml.merges": (ARRAY, (STRING, ["a b", "c d"])),
            "tokenizer.ggml.bos_token_id": (UINT32, bos),
            "tokenizer.ggml.eos_token_id": (UINT32, eos),
            "tokenizer.ggml.add_bos_token": (BOOL, add_bos),
            "general.nested": (ARRAY, (ARRAY, [(UINT64, [1, 2]), (UINT64, [3])])),
        },
    )
