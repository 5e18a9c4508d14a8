"""Shared plumbing for the LLM-judged techniques (rank, fuse, critique).

Showing candidates to a judge, asking for the task's answer format, and reading scores,
choices and orders back out of free-text replies. Small models rarely follow a format to
the letter, so every parser accepts the common variants and returns None (or a partial
result) instead of guessing.

    >>> parse_score("Solid work.\\nScore: 7")
    7.0
    >>> parse_ranking("Ranking: [3] > [1]", 3)
    [2, 0]
    >>> complete_order([2, 0], 3)
    [2, 0, 1]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from thinktank.kinds import kind_of
from thinktank.kinds.base import clip
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate
from thinktank.types import GenerationRequest

__all__ = [
    "clip",
    "complete_order",
    "distinct_groups",
    "distinct_key",
    "format_instruction",
    "judge_request",
    "numbered",
    "parse_choice",
    "parse_ranking",
    "parse_score",
    "show",
]

_SCORE_LABEL = re.compile(r"\b(?:score|rating|grade)\b\**\s*(?:of|is|:|=)?\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_SCORE_FRACTION = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*10\b", re.IGNORECASE)
_CHOICE_LABEL = re.compile(
    r"\b(?:winner|better|answer|choice|verdict)\b\**\s*(?:is|:|=)?\s*\**\s*(?:response|assistant)?\s*[\[(]*\s*((?-i:[AB]))\b",
    re.IGNORECASE,
)
_CHOICE_BRACKETS = re.compile(r"\[\[\s*([AB])\s*\]\]")
_CHOICE_PHRASE = re.compile(r"\b(?:response|assistant)\s+((?-i:[AB]))\s+is\s+(?:better|superior|preferred|more)", re.IGNORECASE)


def format_instruction(task: TaskInput) -> str:
    """What a reply must look like so `thinktank.tasks.answers.extract` finds the answer (the kind's format)."""
    return kind_of(task).format_instruction(task)


def show(task: TaskInput, candidate: Candidate, limit: int) -> str:
    """What a judge reads (the kind's `show`): the executable artefact where there is one, the full reply otherwise."""
    return kind_of(task).show(candidate, limit)


def numbered(task: TaskInput, candidates: Sequence[Candidate], limit: int) -> str:
    return "\n\n".join(f"[{i}]\n{show(task, c, limit)}" for i, c in enumerate(candidates, 1))


def distinct_key(task: TaskInput, candidate: Candidate) -> str:
    """Candidates with equal keys stand for the same answer, so a judge looks at them once."""
    return kind_of(task).distinct_key(candidate)


def distinct_groups(task: TaskInput, candidates: Sequence[Candidate]) -> list[list[int]]:
    """Indices of `candidates` grouped by `distinct_key`, groups in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, candidate in enumerate(candidates):
        groups.setdefault(distinct_key(task, candidate), []).append(i)
    return list(groups.values())


def judge_request(
    model: str, prompt: str, *, temperature: float, max_tokens: int, n: int = 1, seed: int | None = 0
) -> GenerationRequest:
    """One user-message request; seeded so judge calls are reproducible and cacheable."""
    return GenerationRequest(
        [{"role": "user", "content": prompt}], model, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed
    )


def parse_score(text: str, lo: float = 1, hi: float = 10) -> float | None:
    """The last in-range score in `text` ("Score: 7", "**Rating:** 8.5", "7/10", "7 out of 10", a bare "7"), else None."""
    for pattern in (_SCORE_LABEL, _SCORE_FRACTION):
        values = [float(m) for m in pattern.findall(text)]
        values = [v for v in values if lo <= v <= hi]
        if values:
            return values[-1]
    lines = [line.strip(" *.`") for line in text.strip().splitlines() if line.strip()]
    if lines and re.fullmatch(r"\d+(?:\.\d+)?", lines[-1]) and lo <= float(lines[-1]) <= hi:
        return float(lines[-1])
    return None


def parse_choice(text: str) -> str | None:
    """ "A" or "B" from a pairwise verdict ("Winner: B", "[[A]]", "Response B is better", a last line "A"), else None."""
    for pattern in (_CHOICE_LABEL, _CHOICE_BRACKETS, _CHOICE_PHRASE):
        found = pattern.findall(text)
        if found:
            return str(found[-1]).upper()
    lines = [line.strip(" *.`:") for line in text.strip().splitlines() if line.strip()]
    if lines and lines[-1].upper() in ("A", "B"):
        return lines[-1].upper()
    return None


def parse_ranking(text: str, count: int) -> list[int]:
    """0-based indices in the order a listwise judge gave ("[2] > [1] > [3]"); partial if some are missing.

    Reads the last line mentioning "ranking" or containing ">", else the whole reply; numbers
    out of range and repeats are dropped.
    """
    lines = text.strip().splitlines()
    marked = [line for line in lines if "ranking" in line.lower() or ">" in line]
    segment = marked[-1] if marked else text
    if "ranking" in segment.lower():
        segment = segment[segment.lower().rindex("ranking") :]
    numbers = re.findall(r"\[\s*(\d+)\s*\]", segment) or (re.findall(r"\b(\d+)\b", segment) if marked else [])
    order: list[int] = []
    for number in numbers:
        index = int(number) - 1
        if 0 <= index < count and index not in order:
            order.append(index)
    return order


def complete_order(order: Sequence[int], count: int) -> list[int]:
    """`order` followed by the indices it misses, in their original order."""
    return [*order, *(i for i in range(count) if i not in order)]
