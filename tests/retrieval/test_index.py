"""The BM25 index: ranking, persistence, incremental rebuilds, version changes, a corpus changing mid-build."""

import json
import os

import pytest

from thinktank.retrieval import RetrievalError, load_index
from thinktank.retrieval.index import index_dir

DOCS = {
    "cats.txt": "Cats are small domesticated felines that purr and chase mice.",
    "dogs.txt": "Dogs are loyal canines; a dog barks at strangers and fetches sticks.",
    "sea.md": "# The sea\n\nThe ocean covers most of the planet; whales and fish swim in salt water.",
    "space/moon.txt": "The Moon orbits the Earth and causes the tides of the ocean.",
}


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    for rel, text in DOCS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def ids(index, hits):
    return [index.passages[i].id for i, _ in hits]


def test_ranking_sanity(corpus, cache):
    index = load_index(corpus, cache)
    assert ids(index, index.bm25("why does my dog bark?", 1)) == ["dogs.txt"]
    assert ids(index, index.bm25("whales swimming in the ocean", 2)) == ["sea.md", "space/moon.txt"]
    assert ids(index, index.bm25("purring felines", 4))[0] == "cats.txt"
    scores = [s for _, s in index.bm25("ocean tides", 4)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    # k larger than the corpus, and a query of stopwords / unknown words only: corpus order, score 0
    assert len(index.bm25("ocean", 50)) == 4
    assert index.bm25("the of and zzzqqq", 2) == [(0, 0.0), (1, 0.0)]


def test_second_load_does_not_rebuild(corpus, cache):
    first = load_index(corpus, cache)
    assert first.stats.built and first.stats.full_rebuild
    assert sorted(first.stats.retokenised) == sorted(DOCS)
    second = load_index(corpus, cache)
    assert not second.stats.built and second.stats.retokenised == []
    assert [p.id for p in second.passages] == [p.id for p in first.passages]
    assert ids(second, second.bm25("dog barks", 1)) == ["dogs.txt"]


def test_untouched_corpus_loads_from_its_fingerprint_without_reading_files(corpus, cache, monkeypatch):
    for path in corpus.rglob("*.*"):
        os.utime(path, ns=(10**18, 10**18))  # long ago: the stat fingerprint can be trusted
    load_index(corpus, cache)
    import thinktank.retrieval.index as module

    def no_reading(*args, **kwargs):
        raise AssertionError("the corpus was read although its fingerprint matched")

    monkeypatch.setattr(module, "read_corpus", no_reading)
    assert not load_index(corpus, cache).stats.built


def test_only_changed_files_are_retokenised(corpus, cache):
    load_index(corpus, cache)
    (corpus / "dogs.txt").write_text("Dogs howl at the moon.")
    (corpus / "new.txt").write_text("Volcanoes erupt lava.")
    (corpus / "cats.txt").unlink()
    index = load_index(corpus, cache)
    assert index.stats.built and not index.stats.full_rebuild
    assert sorted(index.stats.retokenised) == ["dogs.txt", "new.txt"]
    assert sorted(index.stats.reused) == ["sea.md", "space/moon.txt"]
    assert ids(index, index.bm25("lava volcano erupt", 1)) == ["new.txt"]
    assert "cats.txt" not in [p.id for p in index.passages]
    assert ids(index, index.bm25("howl", 1)) == ["dogs.txt"]
    # one build directory is kept
    assert len([d for d in index_dir(cache, corpus).iterdir() if d.name.startswith("build-")]) == 1


def test_mtime_only_change_does_not_rebuild(corpus, cache):
    load_index(corpus, cache)
    os.utime(corpus / "sea.md", ns=(10**18, 10**18))
    assert not load_index(corpus, cache).stats.built


def test_index_of_another_version_is_rebuilt(corpus, cache):
    load_index(corpus, cache)
    pointer = index_dir(cache, corpus) / "current.json"
    data = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({**data, "version": "0/bm25s-0.0"}))
    index = load_index(corpus, cache)
    assert index.stats.built and index.stats.full_rebuild and sorted(index.stats.retokenised) == sorted(DOCS)
    assert not load_index(corpus, cache).stats.built


def test_corrupt_index_is_rebuilt(corpus, cache):
    load_index(corpus, cache)
    (index_dir(cache, corpus) / "current.json").write_text("{truncated")
    assert load_index(corpus, cache).stats.built


def test_corpus_changed_during_indexing_is_rebuilt_once(corpus, cache):
    edits = []

    def progress(done, total, unit):
        if not edits:
            edits.append(unit)
            (corpus / "dogs.txt").write_text("Dogs dig holes in the garden.")

    index = load_index(corpus, cache, progress=progress)
    assert index.stats.attempts == 2
    assert ids(index, index.bm25("garden holes", 1)) == ["dogs.txt"]
    assert "garden" in next(p.text for p in index.passages if p.id == "dogs.txt")


def test_corpus_that_keeps_changing_is_a_clear_error_and_keeps_the_old_index(corpus, cache):
    load_index(corpus, cache)
    (corpus / "sea.md").write_text("A changed sea.")
    counter = iter(range(1000))

    def progress(done, total, unit):
        (corpus / "dogs.txt").write_text(f"Dogs, edit {next(counter)}.")

    with pytest.raises(RetrievalError, match="changed while it was being indexed"):
        load_index(corpus, cache, progress=progress)
    (corpus / "dogs.txt").write_text(DOCS["dogs.txt"])
    (corpus / "sea.md").write_text(DOCS["sea.md"])
    assert not load_index(corpus, cache).stats.built  # the earlier build is still current


def test_killed_build_loses_nothing(corpus, cache):
    load_index(corpus, cache)
    (corpus / "cats.txt").write_text("Cats sleep all day.")

    def killed(done, total, unit):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_index(corpus, cache, progress=killed)
    (corpus / "cats.txt").write_text(DOCS["cats.txt"])
    assert not load_index(corpus, cache).stats.built


def test_jsonl_corpus_index(tmp_path, cache):
    path = tmp_path / "p.jsonl"
    rows = [{"id": f"p{i}", "text": t, "title": rel} for i, (rel, t) in enumerate(DOCS.items())]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    index = load_index(path, cache)
    assert ids(index, index.bm25("strangers fetch sticks", 1)) == ["p1"]
    assert ids(index, index.bm25("moon.txt", 1)) == ["p3"]  # the title is indexed too
