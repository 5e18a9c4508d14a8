"""Reading corpora: both formats, skipped files counted, bad input named."""

import json

import pytest

from thinktank.retrieval import RetrievalError, read_corpus
from thinktank.retrieval.corpus import split_text


def test_directory_ids_are_relative_paths_and_long_files_are_chunked(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("\n\n".join(f"paragraph {i} " + "word " * 30 for i in range(20)))
    (tmp_path / "ignored.csv").write_text("not a document")
    corpus = read_corpus(tmp_path, chunk_chars=400)
    ids = [p.id for p in corpus.passages]
    assert ids[0] == "a.txt"
    assert ids[1:] == [f"sub/b.md#{i}" for i in range(1, len(ids))]
    assert len(ids) > 3 and all(len(p.text) <= 400 for p in corpus.passages[1:])
    assert "paragraph 0" in corpus.passages[1].text and "paragraph 19" in corpus.passages[-1].text


def test_split_text_cuts_a_huge_paragraph():
    chunks = split_text("x" * 1000, 300)
    assert [len(c) for c in chunks] == [300, 300, 300, 100]


def test_unreadable_binary_and_huge_files_are_skipped_and_counted(tmp_path):
    (tmp_path / "good.txt").write_text("a good passage")
    (tmp_path / "bin.txt").write_bytes(b"abc\0def")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "huge.md").write_text("y" * 5000)
    (tmp_path / "dead.txt").symlink_to(tmp_path / "nowhere")  # unreadable for every uid, root too
    corpus = read_corpus(tmp_path, max_file_bytes=1000)
    assert [p.id for p in corpus.passages] == ["good.txt"]
    assert corpus.skipped["bin.txt"] == "binary"
    assert corpus.skipped["latin.txt"].startswith("binary")
    assert corpus.skipped["huge.md"].startswith("larger than 1000 bytes")
    assert corpus.skipped["dead.txt"].startswith("unreadable")
    assert len(corpus.skipped) == 4


def test_empty_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(RetrievalError, match="has no passages"):
        read_corpus(tmp_path)
    (tmp_path / "bin.txt").write_bytes(b"\0\0")
    with pytest.raises(RetrievalError, match=r"has no passages \(1 file\(s\) skipped: bin.txt: binary\)"):
        read_corpus(tmp_path)
    with pytest.raises(RetrievalError, match="does not exist"):
        read_corpus(tmp_path / "missing")
    (tmp_path / "p.csv").write_text("a,b")
    with pytest.raises(RetrievalError, match="not a .jsonl"):
        read_corpus(tmp_path / "p.csv")


def test_jsonl_passages_in_file_order(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"id": "z", "text": "last letter", "title": "Z"}, {"id": 7, "text": "a number id"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    corpus = read_corpus(path)
    assert [(p.id, p.title, p.text) for p in corpus.passages] == [("z", "Z", "last letter"), ("7", "", "a number id")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "p.jsonl:2: not valid JSON"),
        ('["a list"]', "p.jsonl:2: a passage must be a JSON object"),
        ('{"text": "no id"}', "p.jsonl:2: 'id' must be a non-empty string"),
        ('{"id": "b"}', "p.jsonl:2: 'text' must be a string"),
        ('{"id": "b", "text": "t", "title": 3}', "p.jsonl:2: 'title' must be a string"),
        ('{"id": "a", "text": "again"}', "p.jsonl:2: duplicate passage id 'a'"),
    ],
)
def test_malformed_jsonl_line_is_named(tmp_path, line, message):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "text": "fine"}\n' + line + "\n")
    with pytest.raises(RetrievalError, match=message.replace("[", r"\[")):
        read_corpus(path)


def test_empty_jsonl_is_a_clear_error(tmp_path):
    (tmp_path / "p.jsonl").write_text("\n")
    with pytest.raises(RetrievalError, match="has no passages"):
        read_corpus(tmp_path / "p.jsonl")
