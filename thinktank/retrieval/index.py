"""A corpus's BM25 index (bm25s), built once and kept in the cache dir.

    index = load_index("docs/", cache_dir("retrieval"))   # builds, or loads what an earlier run built
    hits = index.bm25(query, k=5)                          # [(passage position, score), ...], best first

What is incremental: every file (unit) of the corpus is kept tokenised by its content hash, so after a
change only the changed or new files are read into passages and re-tokenised; the BM25 matrix itself
(a sparse matrix over the whole vocabulary) is always rebuilt from the cached tokens, which is cheap.
A load first compares a quick fingerprint (paths, sizes, mtimes); only if it differs are the files read
and their content hashes compared, so an untouched corpus loads without reading a file. A fingerprint
taken while a file was modified moments ago is not trusted (a second write in the same timestamp tick
would not show, git's "racy" case): then the next load compares contents.

An index written by another thinktank index version or bm25s version is rebuilt from scratch. If the
corpus changes while it is indexed (its content hash before and after differ) the build is redone once,
and a second change is a `RetrievalError`. Each build goes to a fresh directory and is made current by
atomically replacing one small pointer file, so a killed build leaves the previous index intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from thinktank.problems import Passage
from thinktank.retrieval.corpus import CHUNK_CHARS, MAX_FILE_BYTES, Unit, read_corpus, scan, stat_key
from thinktank.retrieval.errors import RetrievalError

__all__ = ["INDEX_VERSION", "CorpusIndex", "LoadStats", "index_dir", "load_index", "passage_hash"]

#: bump when the stored layout or the tokenisation changes; an index of another version is rebuilt
INDEX_VERSION = 1
STOPWORDS = "en"

#: progress(done, total, unit): called once per file tokenised during a build
Progress = Callable[[int, int, str], None]


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RetrievalError("BM25 retrieval needs bm25s: pip install 'thinktank[rag]'") from exc
    return bm25s


def version_tag() -> str:
    return f"{INDEX_VERSION}/bm25s-{_bm25s().__version__}"


def passage_hash(passage: Passage) -> str:
    """The content key of a passage (its vectors are cached by it)."""
    return hashlib.sha256(f"{passage.id}\0{passage.title}\0{passage.text}".encode()).hexdigest()


def tokenize(texts: list[str]) -> list[list[str]]:
    tokens: list[list[str]] = _bm25s().tokenize(texts, stopwords=STOPWORDS, return_ids=False, show_progress=False)
    return tokens


#: a file modified less than this before the scan may change again unseen within its mtime tick
RACY_NS = 2_000_000_000


def _trusted_stat_key(path: Path, units: list[Unit]) -> str:
    """The fingerprint to store: the stat key, or "racy" if a file was modified too recently to trust it."""
    now = time.time_ns()
    return "racy" if any(now - u.mtime_ns < RACY_NS for u in units) else stat_key(path, units)


def index_dir(cache: Path, corpus: str | Path) -> Path:
    """Where the index of `corpus` lives under `cache` (one directory per corpus path)."""
    key = hashlib.sha256(str(Path(corpus).resolve()).encode()).hexdigest()[:24]
    return cache / key


@dataclass
class LoadStats:
    """What loading did: `built` False means the stored index was used as is (no file was re-tokenised)."""

    built: bool = False
    full_rebuild: bool = False  # no usable earlier index (none, or another version)
    retokenised: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    attempts: int = 1


@dataclass
class CorpusIndex:
    corpus: Path
    root: Path  # the index's directory (the dense vectors are kept beside the BM25 builds)
    passages: list[Passage]
    skipped: dict[str, str]
    content_key: str
    retriever: Any
    stats: LoadStats = field(default_factory=LoadStats)

    def bm25(self, query: str, k: int) -> list[tuple[int, float]]:
        """The top `k` passages for `query` as (position in corpus order, BM25 score); ties keep corpus order."""
        vocab = self.retriever.vocab_dict
        tokens = [t for t in tokenize([query])[0] if t in vocab]
        scores = np.zeros(len(self.passages))
        if tokens:
            scores = np.asarray(self.retriever.get_scores(tokens), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")[: min(k, len(self.passages))]
        return [(int(i), float(scores[i])) for i in order]

    def with_score(self, position: int, score: float) -> Passage:
        return replace(self.passages[position], score=score)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _current(root: Path) -> dict[str, Any] | None:
    """The pointer to the current build, if it is of this version and its build directory exists."""
    current = _read_json(root / "current.json")
    if current is None or current.get("version") != version_tag() or not (root / str(current.get("build"))).is_dir():
        return None
    return current


def _load_build(root: Path, current: dict[str, Any], corpus: Path, stats: LoadStats) -> CorpusIndex | None:
    build = root / str(current["build"])
    manifest = _read_json(build / "manifest.json")
    if manifest is None:
        return None
    try:
        retriever = _bm25s().BM25.load(str(build / "bm25"), show_progress=False)
        passages = [Passage(p[0], p[2], p[1]) for u in manifest["order"] for p in manifest["units"][u]["passages"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return CorpusIndex(corpus, root, passages, manifest.get("skipped", {}), manifest["content_key"], retriever, stats)


def load_index(
    corpus: str | Path,
    cache: Path,
    *,
    progress: Progress | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    chunk_chars: int = CHUNK_CHARS,
) -> CorpusIndex:
    """The BM25 index of `corpus`, loaded from `cache` if the corpus is unchanged, else (re)built and stored."""
    path = Path(corpus).resolve()
    root = index_dir(cache, path)
    root.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        units = scan(path)
        skey = stat_key(path, units)
        current = _current(root)
        stats = LoadStats(attempts=attempt)
        if current is not None and current.get("stat_key") == skey:
            found = _load_build(root, current, path, stats)
            if found is not None:
                return found
        read = read_corpus(path, units=units, max_file_bytes=max_file_bytes, chunk_chars=chunk_chars)
        if current is not None and current.get("content_key") == read.content_key:
            found = _load_build(root, current, path, stats)
            if found is not None:  # only the mtimes moved: remember the new fingerprint
                _atomic_write(root / "current.json", json.dumps({**current, "stat_key": _trusted_stat_key(path, units)}))
                return found
        previous = _read_json(root / str(current["build"]) / "manifest.json") if current else None
        old_units: dict[str, Any] = (previous or {}).get("units", {})
        old_by_hash = {u["hash"]: u for u in old_units.values() if isinstance(u, dict) and "hash" in u}
        stats.built, stats.full_rebuild = True, not old_by_hash
        stored: dict[str, Any] = {}
        total = len(read.unit_passages)
        for done, (rel, passages) in enumerate(read.unit_passages.items(), start=1):
            digest = read.unit_hashes[rel]
            cached = old_by_hash.get(digest)
            if cached is not None and [p[0] for p in cached["passages"]] == [p.id for p in passages]:
                stored[rel] = cached
                stats.reused.append(rel)
            else:
                tokens = tokenize([f"{p.title}\n{p.text}" if p.title else p.text for p in passages])
                stored[rel] = {
                    "hash": digest,
                    "passages": [[p.id, p.title, p.text, t] for p, t in zip(passages, tokens, strict=True)],
                }
                stats.retokenised.append(rel)
            if progress is not None:
                progress(done, total, rel)
        after = scan(path)  # the contents again, not only the stats: a write within one mtime tick would not show
        again = read_corpus(path, units=after, max_file_bytes=max_file_bytes, chunk_chars=chunk_chars)
        if again.content_key != read.content_key:
            if attempt == 1:
                continue
            raise RetrievalError(f"corpus {path} changed while it was being indexed, twice; index it when it is stable")
        return _store(root, path, read.content_key, _trusted_stat_key(path, after), stored, read.skipped, stats)
    raise AssertionError("unreachable")  # pragma: no cover


def _store(
    root: Path, corpus: Path, content_key: str, skey: str, units: dict[str, Any], skipped: dict[str, str], stats: LoadStats
) -> CorpusIndex:
    """Write a build to a fresh directory, then point `current.json` at it (atomically) and drop older builds."""
    bm25s = _bm25s()
    passages = [Passage(p[0], p[2], p[1]) for u in units.values() for p in u["passages"]]
    retriever = bm25s.BM25()
    retriever.index([p[3] for u in units.values() for p in u["passages"]], show_progress=False)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    try:
        retriever.save(str(tmp / "bm25"), show_progress=False)
        manifest = {
            "version": version_tag(),
            "corpus": str(corpus),
            "content_key": content_key,
            "order": list(units),
            "units": units,
            "skipped": skipped,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        name = f"build-{content_key[:16]}-{tmp.name[len('.build-') :]}"
        os.replace(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _atomic_write(
        root / "current.json", json.dumps({"version": version_tag(), "build": name, "stat_key": skey, "content_key": content_key})
    )
    for old in root.iterdir():
        # a `.build-` directory is another build in progress, unless it is old enough to be a killed one's
        stale = old.name.startswith(".build-") and time.time() - old.stat().st_mtime > 3600
        if old.is_dir() and old.name != name and (old.name.startswith("build-") or stale):
            shutil.rmtree(old, ignore_errors=True)
    return CorpusIndex(corpus, root, passages, skipped, content_key, retriever, stats)
