"""Reading a corpus into passages: a directory of .txt/.md files, or a JSONL of one passage per line.

    corpus = read_corpus("docs/")        # ids are paths relative to docs/, long files split as "a.md#1", "a.md#2"
    corpus = read_corpus("passages.jsonl")  # {"id": "...", "text": "...", "title": "..."} per line

A directory's unreadable, binary or huge files are skipped and counted (`Corpus.skipped`), never fatal;
an empty corpus and a malformed JSONL line (named by its number) are `RetrievalError`s. A *unit* is what
the index caches and re-reads as one piece: a file of a directory, or the whole JSONL.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from thinktank.problems import Passage
from thinktank.retrieval.errors import RetrievalError

__all__ = ["Corpus", "Unit", "read_corpus", "scan", "split_text"]

SUFFIXES = (".txt", ".md")
#: files larger than this are skipped (a corpus of documents, not a data dump)
MAX_FILE_BYTES = 20_000_000
#: a file longer than this is split into chunks of about this many characters, on paragraph breaks
CHUNK_CHARS = 4000


@dataclass(frozen=True)
class Unit:
    """One file of the corpus as found on disk: what the quick (stat) fingerprint covers."""

    rel: str
    size: int
    mtime_ns: int


@dataclass
class Corpus:
    path: Path
    passages: list[Passage]
    #: passages of each unit (by relative path), and each unit's content hash
    unit_hashes: dict[str, str] = field(default_factory=dict)
    unit_passages: dict[str, list[Passage]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> why

    @property
    def content_key(self) -> str:
        return content_key(self.unit_hashes)


def content_key(unit_hashes: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(unit_hashes):
        digest.update(f"{rel}\0{unit_hashes[rel]}\n".encode())
    return digest.hexdigest()


def scan(path: Path) -> list[Unit]:
    """The corpus's candidate files with their sizes and mtimes, sorted (a missing path is a `RetrievalError`)."""
    if path.is_file():
        st = path.stat()
        return [Unit(path.name, st.st_size, st.st_mtime_ns)]
    if not path.is_dir():
        raise RetrievalError(f"corpus {path} does not exist (expected a directory of .txt/.md files or a .jsonl file)")
    units = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(SUFFIXES):
                continue
            full = Path(root, name)
            try:
                st = full.stat()
            except OSError:
                units.append(Unit(full.relative_to(path).as_posix(), -1, -1))
                continue
            units.append(Unit(full.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns))
    return sorted(units, key=lambda u: u.rel)


def stat_key(path: Path, units: list[Unit]) -> str:
    digest = hashlib.sha256(str(path.resolve()).encode())
    for u in units:
        digest.update(f"{u.rel}\0{u.size}\0{u.mtime_ns}\n".encode())
    return digest.hexdigest()


def split_text(text: str, chunk_chars: int = CHUNK_CHARS) -> list[str]:
    """`text` in chunks of about `chunk_chars`, cut at blank lines where possible (one chunk if it is short)."""
    text = text.strip()
    if len(text) <= chunk_chars:
        return [text] if text else []
    chunks: list[str] = []
    current = ""
    for para in text.split("\n\n"):
        while len(para) > chunk_chars:  # one huge paragraph: cut it hard
            if current:
                chunks.append(current)
                current = ""
            chunks.append(para[:chunk_chars])
            para = para[chunk_chars:]
        if current and len(current) + 2 + len(para) > chunk_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current.strip():
        chunks.append(current)
    return [c.strip() for c in chunks if c.strip()]


def _read_file(full: Path, max_bytes: int) -> tuple[str | None, str]:
    """(text, "") or (None, why it is skipped)."""
    try:
        size = full.stat().st_size
        if size > max_bytes:
            return None, f"larger than {max_bytes} bytes ({size})"
        data = full.read_bytes()
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if b"\0" in data[:8192]:
        return None, "binary"
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError:
        return None, "binary (not UTF-8)"


def _jsonl_passages(path: Path, text: str) -> list[Passage]:
    passages: list[Passage] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RetrievalError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise RetrievalError(f"{path}:{number}: a passage must be a JSON object, got {type(row).__name__}")
        pid, body, title = row.get("id"), row.get("text"), row.get("title", "")
        if not isinstance(pid, str | int) or isinstance(pid, bool) or str(pid) == "":
            raise RetrievalError(f"{path}:{number}: 'id' must be a non-empty string")
        if not isinstance(body, str):
            raise RetrievalError(f"{path}:{number}: 'text' must be a string")
        if not isinstance(title, str):
            raise RetrievalError(f"{path}:{number}: 'title' must be a string")
        if str(pid) in seen:
            raise RetrievalError(f"{path}:{number}: duplicate passage id {str(pid)!r}")
        seen.add(str(pid))
        passages.append(Passage(str(pid), body, title))
    return passages


def file_passages(rel: str, text: str, chunk_chars: int = CHUNK_CHARS) -> list[Passage]:
    chunks = split_text(text, chunk_chars)
    if len(chunks) == 1:
        return [Passage(rel, chunks[0])]
    return [Passage(f"{rel}#{i}", chunk) for i, chunk in enumerate(chunks, start=1)]


def read_corpus(
    path: str | Path,
    *,
    units: list[Unit] | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    chunk_chars: int = CHUNK_CHARS,
) -> Corpus:
    """Every passage of the corpus at `path`, in corpus order (files sorted by path, lines in file order)."""
    path = Path(path)
    units = scan(path) if units is None else units
    corpus = Corpus(path, [])
    if path.is_file():
        if not path.name.lower().endswith(".jsonl"):
            raise RetrievalError(f"corpus {path} is a file but not a .jsonl; pass a directory of .txt/.md files or a JSONL")
        try:
            data = path.read_bytes()
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RetrievalError(f"corpus {path} cannot be read as UTF-8 text: {exc}") from exc
        corpus.passages = _jsonl_passages(path, text)
        corpus.unit_hashes[path.name] = hashlib.sha256(data).hexdigest()
        corpus.unit_passages[path.name] = corpus.passages
    else:
        for unit in units:
            body, why = _read_file(path / unit.rel, max_file_bytes)
            if body is None:
                corpus.skipped[unit.rel] = why
                continue
            corpus.unit_hashes[unit.rel] = hashlib.sha256(body.encode()).hexdigest()
            corpus.unit_passages[unit.rel] = file_passages(unit.rel, body, chunk_chars)
            corpus.passages.extend(corpus.unit_passages[unit.rel])
    if not corpus.passages:
        skipped = f" ({len(corpus.skipped)} file(s) skipped: {_skipped_summary(corpus.skipped)})" if corpus.skipped else ""
        raise RetrievalError(f"corpus {path} has no passages{skipped}")
    return corpus


def _skipped_summary(skipped: dict[str, str], limit: int = 3) -> str:
    items = [f"{rel}: {why}" for rel, why in list(skipped.items())[:limit]]
    return "; ".join(items) + (" ..." if len(skipped) > limit else "")
