"""Retrieval QA: a short answer read from the reply, graded by normalised exact match and token F1 (`verifiers.qa`).

    >>> QaKind().extract(TaskInput("q", "qa", "Who founded Velmora Works?"), "It says so in [p12].\\nAnswer: Ilsa Dravik [p12]")
    'Ilsa Dravik'

Extraction: the last "Answer: ..." line (also "Final answer:", "**Answer:**"), else the last "the answer is ...", else
the last non-empty line; bracketed citations ("[p12]", "[p3, p7]") and wrapping quotes or bold are stripped. When the
task asks for citations (`meta["cite"]`), the ids cited anywhere in the reply are kept after the answer, in brackets,
so the public check can see them; grading and voting ignore them. Keys: the normalised answer, so "3" and "three"
vote together. Public check (only with `meta["cite"]`): at least one cited id is a passage of the task's corpus.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from thinktank.exceptions import TaskDataError
from thinktank.kinds.base import Key, Reply, TaskKind
from thinktank.problems import Problem, TaskInput
from thinktank.retrieval.corpus import read_corpus, scan
from thinktank.retrieval.errors import RetrievalError
from thinktank.verifiers.base import Verdict
from thinktank.verifiers.qa import AnswerSet, QaVerifier, normalize_answer

if TYPE_CHECKING:
    from thinktank.engine.resources import Resources

__all__ = ["CorpusIds", "QaKind", "cited_ids", "corpus_ids", "extract_short_answer", "strip_citations"]

_ANSWER_LINE = re.compile(r"^[\s>*#_-]*(?:final\s+)?answer\s*\**\s*[:：]\s*\**(.*)$", re.IGNORECASE | re.MULTILINE)
_ANSWER_IS = re.compile(r"\bthe\s+(?:final\s+)?answer\s+is\s*:?\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_CITATION = re.compile(r"\[([^\[\]\n]{1,200})\]")
_WRAPPING = "*_`\"'“”‘’ \t"


def strip_citations(text: str) -> str:
    """`text` without its bracketed citations, wrapping quotes/bold and a trailing full stop."""
    text = " ".join(_CITATION.sub(" ", text).split()).strip(_WRAPPING)
    return text.removesuffix(".").rstrip(_WRAPPING)


def cited_ids(text: str) -> list[str]:
    """Every id cited in brackets in `text`, in order, once each ("[p3, p7]" cites two)."""
    found = (part.strip() for group in _CITATION.findall(text) for part in re.split(r"[,;]", group))
    return list(dict.fromkeys(i for i in found if i))


def extract_short_answer(text: str) -> str | None:
    """The answer a reply gives, without citations (module docstring); None when the reply is empty."""
    for pattern in (_ANSWER_LINE, _ANSWER_IS):
        for match in reversed(list(pattern.finditer(text))):
            answer = strip_citations(match.group(1))
            if answer:
                return answer
    lines = [strip_citations(line) for line in text.splitlines()]
    return next((line for line in reversed(lines) if line), None)


def corpus_ids(path: str | Path) -> frozenset[str]:
    """The passage ids of a corpus, read as the retrieval package reads it: each JSONL line's "id", or each .txt/.md
    file's path relative to the directory (whose long files are retrieved in chunks "<path>#<n>"; the citation
    check accepts those too)."""
    path = Path(path)
    try:
        if path.is_dir():
            return frozenset(unit.rel for unit in scan(path))
        return frozenset(passage.id for passage in read_corpus(path).passages)
    except RetrievalError as exc:
        raise TaskDataError(str(exc)) from exc


class CorpusIds:
    """The run's cache of corpus ids (a `Resources` entry): each corpus is read once, again only when it changes."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[tuple[int, int], frozenset[str]]] = {}

    async def ids(self, path: str) -> frozenset[str]:
        stamp = await asyncio.to_thread(_stamp, path)
        cached = self._known.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        ids = await asyncio.to_thread(corpus_ids, path)
        self._known[path] = (stamp, ids)
        return ids


def _stamp(path: str) -> tuple[int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0)
    return (info.st_mtime_ns, info.st_size)


class QaKind(TaskKind):
    name = "qa"
    answer_format = 'Answer with a short phrase (a name, a year, a place), not a sentence, on a final line "Answer: <answer>".'
    artefact = "answer"

    def extract(self, task: TaskInput, text: str) -> str | None:
        answer = extract_short_answer(text)
        if answer is None or not _wants_citations(task):
            return answer
        cited = cited_ids(text)
        return f"{answer} [{', '.join(cited)}]" if cited else answer

    def format_instruction(self, task: TaskInput) -> str:
        if not _wants_citations(task):
            return self.answer_format
        return (
            f"{self.answer_format} After the answer, cite the id of each passage that supports it in square brackets,"
            ' e.g. "Answer: 1887 [doc-12]".'
        )

    async def answer_keys(
        self, resources: Resources, task: TaskInput, candidates: Sequence[Reply], memo: dict[str, Key]
    ) -> list[Key]:
        return [_key(c.answer) for c in candidates]

    def distinct_answer(self, answer: str) -> str:
        return "qa:" + (normalize_answer(strip_citations(answer)) or answer.strip())

    def has_public_checks(self, task: TaskInput) -> bool:
        return _wants_citations(task) and bool(task.corpus)

    async def run_public_checks(self, resources: Resources, task: TaskInput, answer: str) -> Verdict:
        cited = cited_ids(answer)
        if not cited:
            return Verdict(False, "the answer cites no passage", 0.0, {"cited": []})
        try:
            known = await resources.get(CorpusIds).ids(task.corpus or "")
        except TaskDataError as exc:
            return Verdict(False, f"cannot read the corpus: {exc}", 0.0, {"cited": cited})
        # a long file of a directory corpus is retrieved in chunks "a.md#1", "a.md#2": a chunk of a known file counts
        found = [i for i in cited if i in known or (i.rpartition("#")[0] in known and i.rpartition("#")[2].isdigit())]
        details = {"cited": cited, "found": found}
        if not found:
            return Verdict(False, f"no cited id is a passage of the corpus: {', '.join(cited)}", 0.0, details)
        return Verdict(True, f"cites {len(found)} passage(s) of the corpus", len(found) / len(cited), details)

    async def grade(self, resources: Resources, problem: Problem, answer: str) -> Verdict:
        hidden = problem.hidden
        return await resources.get(QaVerifier).check(strip_citations(answer), AnswerSet(hidden.answer, hidden.aliases))


def _wants_citations(task: TaskInput) -> bool:
    return task.meta.get("cite") is True


def _key(answer: str | None) -> Key:
    """Equal for answers that normalise alike ("Three" / "3", "the Osk" / "Osk"); no answer casts no vote."""
    return (normalize_answer(strip_citations(answer)) or None) if answer else None
