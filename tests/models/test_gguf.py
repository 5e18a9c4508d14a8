import pytest
from gguf_files import STRING, UINT32, tokenizer_gguf, write_gguf

from thinktank.exceptions import ModelPackError
from thinktank.models.gguf import MAX_SIZE_DIFFERENCE, read_vocab, vocab_mismatch

TOKENS = [f"tok{i}" for i in range(300)]


def test_reads_the_tokenizer_and_skips_every_other_value(tmp_path):
    vocab = read_vocab(tokenizer_gguf(tmp_path / "m.gguf", TOKENS, bos=7, eos=9, add_bos=True))
    assert (vocab.model, vocab.pre, vocab.size, vocab.bos, vocab.eos, vocab.add_bos, vocab.add_eos) == (
        "gpt2", "qwen2", 300, 7, 9, True, False,
    )  # fmt: skip
    assert vocab.tokens[:2] == ("tok0", "tok1") and vocab.tokens[-1] == "tok299"


def test_equal_vocabularies_have_equal_checksums(tmp_path):
    a = read_vocab(tokenizer_gguf(tmp_path / "a.gguf", TOKENS))
    b = read_vocab(tokenizer_gguf(tmp_path / "b.gguf", TOKENS, bos=3))
    c = read_vocab(tokenizer_gguf(tmp_path / "c.gguf", [*TOKENS[:-1], "other"]))
    assert a.checksum == b.checksum != c.checksum


def test_a_matching_draft_passes(tmp_path):
    target = read_vocab(tokenizer_gguf(tmp_path / "t.gguf", TOKENS))
    # sizes may differ by padding tokens (Qwen's GGUFs do), and ids below 5 are control tokens llama.cpp skips
    draft = read_vocab(tokenizer_gguf(tmp_path / "d.gguf", ["x", "y", *TOKENS[2:], *["pad"] * MAX_SIZE_DIFFERENCE]))
    assert vocab_mismatch(target, draft) is None


@pytest.mark.parametrize(
    ("draft_tokens", "options", "reason"),
    [
        (TOKENS, {"model": "llama"}, "tokenizer type 'llama' differs from the target's 'gpt2'"),
        (TOKENS + ["pad"] * (MAX_SIZE_DIFFERENCE + 1), {}, "vocabulary size 429 differs from the target's 300 by more than 128"),
        ([*TOKENS[:42], "changed", *TOKENS[43:]], {}, "token 42 is 'changed' in the draft but 'tok42' in the target"),
        (TOKENS, {"add_bos": True}, "BOS handling differs"),
    ],
)
def test_a_mismatched_draft_is_refused_with_the_reason(tmp_path, draft_tokens, options, reason):
    target = read_vocab(tokenizer_gguf(tmp_path / "t.gguf", TOKENS))
    draft = read_vocab(tokenizer_gguf(tmp_path / "d.gguf", draft_tokens, **options))
    assert reason in (vocab_mismatch(target, draft) or "")


def test_bos_ids_matter_only_when_a_bos_is_added(tmp_path):
    target = read_vocab(tokenizer_gguf(tmp_path / "t.gguf", TOKENS, bos=1, add_bos=True))
    assert "BOS" in (vocab_mismatch(target, read_vocab(tokenizer_gguf(tmp_path / "d.gguf", TOKENS, bos=2, add_bos=True))) or "")
    plain = read_vocab(tokenizer_gguf(tmp_path / "p.gguf", TOKENS, bos=1))
    assert vocab_mismatch(plain, read_vocab(tokenizer_gguf(tmp_path / "q.gguf", TOKENS, bos=2))) is None


def test_unreadable_headers_raise_model_pack_errors(tmp_path):
    (tmp_path / "bad.gguf").write_bytes(b"GGML" + b"\0" * 40)
    with pytest.raises(ModelPackError, match="bad magic"):
        read_vocab(tmp_path / "bad.gguf")
    whole = tokenizer_gguf(tmp_path / "whole.gguf", TOKENS).read_bytes()
    (tmp_path / "cut.gguf").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ModelPackError, match="truncated"):
        read_vocab(tmp_path / "cut.gguf")
    with pytest.raises(ModelPackError, match="cannot read"):
        read_vocab(tmp_path / "missing.gguf")


def test_a_file_without_a_tokenizer_is_refused(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", {"general.architecture": (STRING, "x"), "x.block_count": (UINT32, 2)})
    with pytest.raises(ModelPackError, match="declares no tokenizer"):
        read_vocab(path)


def test_an_unknown_value_type_is_an_error_not_a_hang(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", {"general.architecture": (STRING, "x")})
    data = bytearray(path.read_bytes())
    data[4 + 4 + 16 + 8 + len("general.architecture")] = 99  # the value type of the only key
    path.write_bytes(bytes(data))
    with pytest.raises(ModelPackError, match="unknown GGUF metadata type 99"):
        read_vocab(path)
