"""Short answers (QA): SQuAD-style normalisation, exact match and token F1 against a gold answer and its aliases.

    >>> normalize_answer("The Three Rivers!")
    '3 rivers'
    >>> exact_match("three", "3"), round(token_f1("the river Osk", "Osk"), 2)
    (True, 0.67)

Normalisation (Rajpurkar et al. 2016's evaluation script, plus numbers): lower-case; spelled numbers become digits
("twenty-one" -> "21", "one thousand nine hundred and five" -> "1905", "first" -> "1st", via `text2num`); thousands
separators go ("1,200" -> "1200") and decimal points stay; hyphens, dashes and slashes become spaces, other
punctuation is dropped; the articles a/an/the are removed; whitespace is collapsed. A verdict passes on exact match
with any reference, and carries the best exact match and token F1 over the references in `details` (`em`, `f1`, `best`).
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from text_to_num import alpha2digit

from thinktank.verifiers.base import Verdict

__all__ = ["AnswerSet", "QaVerifier", "exact_match", "normalize_answer", "score_answer", "token_f1"]

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_SPACERS = re.compile(r"[-\u2010-\u2015/]")
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_KEPT_POINT = "\x00"  # a decimal point survives punctuation removal ("3.5" must not equal "35")


def _spell_out_numbers(text: str) -> str:
    """Spelled numbers as digits; threshold 0 so that even an isolated "one" or "two" is converted."""
    try:
        return alpha2digit(text, "en", threshold=0)
    except (ValueError, RuntimeError):  # the parser rejects nothing we know of; never let it fail a grade
        return text


def normalize_answer(text: str) -> str:
    """The form answers are compared in (module docstring); an empty string means no answer."""
    text = _spell_out_numbers(unicodedata.normalize("NFKC", text).lower())
    text = _DECIMAL_POINT.sub(_KEPT_POINT, _SPACERS.sub(" ", _THOUSANDS.sub("", text)))
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P")).replace(_KEPT_POINT, ".")
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(answer: str, reference: str) -> bool:
    return normalize_answer(answer) == normalize_answer(reference)


def token_f1(answer: str, reference: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (the SQuAD definition)."""
    predicted, gold = normalize_answer(answer).split(), normalize_answer(reference).split()
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class AnswerSet:
    """What a QA answer is graded against: the main gold answer and the other answers that count as right."""

    answer: str
    aliases: Sequence[str] = ()

    @property
    def references(self) -> list[str]:
        return [r for r in (self.answer, *self.aliases) if normalize_answer(r)]


def score_answer(answer: str, gold: AnswerSet) -> tuple[bool, float, str]:
    """(best exact match, best token F1, the reference that gave the best F1) over the answer and its aliases."""
    references = gold.references
    if not references:
        return False, 0.0, ""
    scored = [(exact_match(answer, r), token_f1(answer, r), r) for r in references]
    return max(scored, key=lambda s: (s[0], s[1]))


class QaVerifier:
    """Grades a short answer against an `AnswerSet`: passed = exact match, score = token F1 (both maxed over aliases)."""

    async def check(self, answer: str, reference: AnswerSet) -> Verdict:
        started = time.monotonic()
        if not reference.references:
            return Verdict(False, "the problem has no reference answer", 0.0, {"em": 0.0, "f1": 0.0, "best": ""})
        em, f1, best = score_answer(answer, reference)
        reason = f"exact match with {best!r}" if em else f"no exact match (token F1 {f1:.2f} against {best!r})"
        details = {"em": float(em), "f1": f1, "best": best, "normalized": normalize_answer(answer)}
        return Verdict(em, reason, f1, details, time.monotonic() - started)
