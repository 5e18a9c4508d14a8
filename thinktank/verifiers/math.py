"""Math final answers: find the answer in a reply, and decide when two answers are the same value.

Extraction, first rule that matches wins:
    1. the last ``\\boxed{...}`` (nested braces allowed)
    2. the last ``#### ...`` line (GSM8K style)
    3. the last "the answer is ..." / "Answer: ..." / "Final answer: ..." (up to the end of the sentence)
    4. otherwise the last number in the text

Equivalence (`answers_equivalent`) and the voting key (`canonical_answer`) share one parser:
    - thousands separators, currency signs, ``\\text{...}`` and trailing unit words are dropped ("$1,200 dollars" == 1200)
    - fractions, decimals, mixed numbers and ``\\frac``/``\\dfrac``/``\\sqrt`` become exact sympy values ("3/4" == "0.75")
    - two integers must be equal exactly; other numbers match within rel_tol/abs_tol (1e-9 each: float noise, not rounding)
    - simple expressions ("2x+1", "sqrt(2)/2") are parsed by sympy from a whitelisted alphabet and compared by simplification
    - percent rule: "%" is a unit, so "50%" == "50"; in addition, when exactly one side carries "%", "50%" == "0.5".
      The voting key drops the sign, so "50%" and "50" vote together (but "0.5" votes separately).
    - anything else is compared as case- and whitespace-insensitive text; tuples are compared element by element.

Sympy never sees raw text: only characters from a small alphabet, known function names, single-letter
symbols, and powers with short exponents and no power towers, so parsing cannot run code or explode.
"""

from __future__ import annotations

import math
import re
import time
from fractions import Fraction

import sympy
from sympy.parsing.sympy_parser import convert_xor, implicit_multiplication_application, parse_expr, standard_transformations

from thinktank.verifiers.base import Verdict

__all__ = ["MathVerifier", "answer_key", "answers_equivalent", "canonical_answer", "extract_answer"]

_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|(?<![\w.])[-+]?\.\d+")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3})?")  # 1e999999999 would build a huge int
_FRACTION = re.compile(r"([-+]?\d+)\s*/\s*(\d+)")
_MIXED = re.compile(r"([-+]?\d+)\s+(\d+)/(\d+)")
_ANSWER_PHRASE = re.compile(r"\b(?:final\s+)?answer\**\s*(?:is\s*:?|:|=)\s*\**\s*([^\n]+)", re.IGNORECASE)
_UNIT_TAIL = re.compile(r"^(.*?\d\)?)\s*([A-Za-z][A-Za-z.\s]*)$")
_FUNCTIONS = {"sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "log": sympy.log, "ln": sympy.log}
_CONSTANTS = {"pi": sympy.pi, "e": sympy.E}
_SAFE_CHARS = re.compile(r"[0-9A-Za-z+\-*/^().\s]+")
_SAFE_GLOBALS = {
    "__builtins__": {},
    "Integer": sympy.Integer,
    "Float": sympy.Float,
    "Rational": sympy.Rational,
    "Symbol": sympy.Symbol,
}
_TRANSFORMS = (*standard_transformations, implicit_multiplication_application, convert_xor)
_EXPONENT = re.compile(r"\s*(?:\(\s*-?\d{1,2}(?:\s*/\s*\d{1,2})?\s*\)|-?\d{1,2}(?!\d)|[A-Za-z](?![A-Za-z]))")


def _braced(text: str, open_at: int) -> tuple[str, int] | None:
    """Content of the brace group starting at `open_at` and the index after it, or None if unbalanced."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i], i + 1
    return None


def _last_boxed(text: str) -> str | None:
    for match in reversed(list(re.finditer(r"\\(?:boxed|fbox)\s*\{", text))):
        group = _braced(text, match.end() - 1)
        if group is not None:
            return group[0]
    return None


def extract_answer(text: str | None) -> str | None:
    """The final answer written in `text` (see the module docstring for the rules), or None."""
    if not text:
        return None
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    hashes = re.findall(r"####\s*([^\n]*\S)", text)
    if hashes:
        return hashes[-1].strip()
    phrases = _ANSWER_PHRASE.findall(text)
    if phrases:
        span = re.split(r"\.(?:\s|$)", phrases[-1].strip(), maxsplit=1)[0].strip().strip("*").strip()
        numbers = _NUMBER.findall(span)
        if _parse(span) is None and numbers and re.search(r"[A-Za-z]{2}", span):
            return numbers[-1]  # "John has 42 apples left" -> "42"
        return span or None
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _unlatex(s: str) -> str:
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"(\1)/(\2)", s)  # \frac12
    for command in ("frac", "sqrt", "text", "textbf", "mathrm", "mbox"):
        while (m := re.search(rf"\\{command}\s*\{{", s)) is not None:
            first = _braced(s, m.end() - 1)
            if first is None:
                return s
            if command == "frac":
                rest = s[first[1] :].lstrip()
                second = _braced(rest, 0) if rest.startswith("{") else None
                if second is None:
                    return s
                s = f"{s[: m.start()]}(({first[0]})/({second[0]})){rest[second[1] :]}"
            else:
                inner = f"sqrt({first[0]})" if command == "sqrt" else f" {first[0]} "
                s = s[: m.start()] + inner + s[first[1] :]
    for old, new in (("\\left", ""), ("\\right", ""), ("\\cdot", "*"), ("\\times", "*"), ("\\div", "/"), ("\\pi", "pi")):
        s = s.replace(old, new)
    s = re.sub(r"\^\s*\{?\\circ\}?|°|\\[!,;: ]|~", " ", s)
    return s.replace("\\%", "%").replace("\\$", "$").replace("{", "(").replace("}", ")")


def _clean(answer: str) -> tuple[str, bool]:
    """Strip markup, money and separators; returns (text, had_percent_sign)."""
    s = answer.strip().replace("−", "-")
    boxed = _last_boxed(s)
    if boxed is not None and s.startswith("\\"):
        s = boxed
    s = re.sub(r"^\$+|\$+$|^\\\(|\\\)$|^\\\[|\\\]$", "", re.sub(r"^\*\*|\*\*$", "", s).strip()).strip()
    s = _unlatex(s)
    s = re.sub(r"[$€£¥₹]", "", s)
    s = re.sub(r"(?<![\d.])(\d{1,3}(?:,\d{3})+)(?!\d)", lambda m: m.group(1).replace(",", ""), s)
    s = re.sub(r"\s+", " ", s).strip().rstrip(".;:").strip()
    percent = bool(re.search(r"(%|\bpercent)$", s))
    if percent:
        s = re.sub(r"\s*(%|\bpercent)$", "", s)
    return s, percent


def _safe_sympy(s: str) -> sympy.Expr | None:
    """Parse a small whitelisted expression; None for anything outside the whitelist."""
    s = s.replace("**", "^")
    if len(s) > 120 or not _SAFE_CHARS.fullmatch(s) or re.search(r"\.(?!\d)|\d[eE][-+]?\d{4}", s):
        return None  # attribute access, or a float exponent sympy would expand digit by digit
    for word in re.findall(r"[A-Za-z]+", s):
        if len(word) > 1 and word not in _FUNCTIONS and word not in _CONSTANTS:
            return None
    for i, ch in enumerate(s):
        if ch != "^":
            continue
        exponent = _EXPONENT.match(s, i + 1)
        if exponent is None or s[exponent.end() :].lstrip().startswith("^"):
            return None  # long exponents and power towers could take forever to evaluate
        if s[:i].rstrip().endswith(")"):
            depth, j = 0, len(s[:i].rstrip()) - 1
            while j >= 0 and not (s[j] == "(" and depth == 1):
                depth += {")": 1, "(": -1}.get(s[j], 0)
                j -= 1
            if "^" in s[j:i]:
                return None
    try:
        expr = parse_expr(
            s, local_dict={**_FUNCTIONS, **_CONSTANTS}, global_dict=dict(_SAFE_GLOBALS), transformations=_TRANSFORMS
        )
    except Exception:  # sympy raises a zoo of types (SyntaxError, TokenError, TypeError...) for malformed input
        return None
    if not isinstance(expr, sympy.Expr) or expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        return None  # a division by zero is not a value (and zoo*x - zoo*x is nan, so it would not equal itself)
    return expr


def _parse(s: str) -> sympy.Expr | None:
    """An exact value for a cleaned answer, or None if it is not mathematical (or too long to be an answer)."""
    if not s or len(s) > 500:
        return None
    if _PLAIN_NUMBER.fullmatch(s):
        return sympy.Rational(Fraction(s))
    if m := _FRACTION.fullmatch(s):
        return sympy.Rational(int(m.group(1)), int(m.group(2))) if int(m.group(2)) else None
    if m := _MIXED.fullmatch(s):
        whole, frac = int(m.group(1)), Fraction(int(m.group(2)), int(m.group(3)))
        return sympy.Rational(whole + frac if whole >= 0 else whole - frac)
    unit = _UNIT_TAIL.match(s)
    # "42 apples", "5 cm" lose their unit; a single letter may be a variable ("2 x"), and "2 pi" is a value
    if unit and len(unit.group(2).strip()) > 1 and not set(re.findall(r"[A-Za-z]+", unit.group(2))) & {*_FUNCTIONS, *_CONSTANTS}:
        return _parse(unit.group(1).strip())
    if "=" in s:
        return _parse(s.rsplit("=", 1)[1].strip())
    return _safe_sympy(s)


def _split_tuple(s: str) -> list[str] | None:
    """Elements of "(a, b)" / "[a, b]" / "a, b" at the top level, or None for a single value."""
    if len(s) > 1 and s[0] + s[-1] in ("()", "[]"):
        s = s[1:-1]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(s[start:i].strip())
            start = i + 1
    parts.append(s[start:].strip())
    return parts if len(parts) > 1 else None


def _text_key(s: str) -> str:
    return re.sub(r"\s+", " ", s.lower()).strip(" .'\"`")


def _numbers_close(a: sympy.Expr, b: sympy.Expr, rel_tol: float, abs_tol: float) -> bool:
    if a == b:
        return True
    if a.is_Integer and b.is_Integer:
        return False  # integers are exact: 1000000 != 1000001 whatever the tolerance
    try:
        x, y = complex(sympy.N(a, 30)), complex(sympy.N(b, 30))
    except (TypeError, ValueError):
        return False
    return math.isclose(x.real, y.real, rel_tol=rel_tol, abs_tol=abs_tol) and math.isclose(
        x.imag, y.imag, rel_tol=rel_tol, abs_tol=abs_tol
    )


def _values_equal(a: sympy.Expr, b: sympy.Expr, rel_tol: float, abs_tol: float) -> bool:
    if a.is_number and b.is_number:
        return _numbers_close(a, b, rel_tol, abs_tol)
    try:
        return bool(sympy.simplify(a - b) == 0)
    except Exception:  # simplify can fail on odd inputs; then they are not provably equal
        return False


def answers_equivalent(a: str | None, b: str | None, *, rel_tol: float = 1e-9, abs_tol: float = 1e-9) -> bool:
    """Whether two final answers denote the same value (rules in the module docstring)."""
    if a is None or b is None:
        return False
    (ca, pa), (cb, pb) = _clean(str(a)), _clean(str(b))
    va, vb = _parse(ca), _parse(cb)
    if va is not None and vb is not None:
        if _values_equal(va, vb, rel_tol, abs_tol):
            return True
        if pa != pb:  # exactly one side says "%": 50% may also mean 0.5
            scaled, other = (va / 100, vb) if pa else (vb / 100, va)
            return _values_equal(scaled, other, rel_tol, abs_tol)
        return False
    ta, tb = _split_tuple(ca), _split_tuple(cb)
    if ta and tb:
        return len(ta) == len(tb) and all(
            answers_equivalent(x, y, rel_tol=rel_tol, abs_tol=abs_tol) for x, y in zip(ta, tb, strict=True)
        )
    return va is None and vb is None and _text_key(ca) == _text_key(cb)


def _value_key(s: str) -> str:
    value = _parse(s)
    if value is None:
        parts = _split_tuple(s)
        return "(" + ",".join(_value_key(p) for p in parts) + ")" if parts else _text_key(s)
    if value.is_Rational:
        return str(value)  # "3/4", "-2", "1200"
    if value.is_number:
        z = complex(sympy.N(value, 30))
        return f"{z.real:.10g}" if abs(z.imag) < 1e-12 else f"{z.real:.10g}{z.imag:+.10g}i"
    try:
        return str(sympy.simplify(value))
    except Exception:  # fall back to the unsimplified form rather than failing the vote
        return str(value)


def canonical_answer(text: str | None) -> str | None:
    """A hashable normal form of the answer in `text`, so equal values vote together; None if no answer."""
    return answer_key(extract_answer(text))


def answer_key(answer: str | None) -> str | None:
    """`canonical_answer` of an answer already extracted ("3/4", "sqrt(2)/2"): nothing is searched for in it."""
    if answer is None:
        return None
    cleaned, _percent = _clean(answer)
    return _value_key(cleaned) if cleaned else None


class MathVerifier:
    """Grades a free-text reply against a reference final answer.

    >>> MathVerifier().grade("so she pays $1,200 in total.\\n#### 1200", "1200").passed
    True
    """

    def __init__(self, rel_tol: float = 1e-9, abs_tol: float = 1e-9) -> None:
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol

    def grade(self, reply: str, gold: str) -> Verdict:
        start = time.perf_counter()
        answer = extract_answer(reply)
        gold_answer = _last_boxed(gold) or (re.findall(r"####\s*([^\n]*\S)", gold) or [gold])[-1]
        details = {"extracted": answer, "gold": gold_answer.strip()}
        if answer is None:
            return Verdict(False, "no final answer found in the reply", 0.0, details, time.perf_counter() - start)
        passed = answers_equivalent(answer, gold_answer, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        reason = f"answer {answer!r} {'matches' if passed else 'does not match'} the reference"
        return Verdict(passed, reason, 1.0 if passed else 0.0, details, time.perf_counter() - start)

    async def check(self, answer: str, reference: str) -> Verdict:
        """The `Verifier` method (the work is quick and pure, so `grade` stays available synchronously)."""
        return self.grade(answer, reference)
