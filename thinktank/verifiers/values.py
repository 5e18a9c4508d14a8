"""A value a sandboxed program returned (its repr), written as a math answer, or why it is not a number.

    >>> number_text("12.000000000000002"), number_text("Fraction(3, 4)"), number_text("'$1,200'")
    (('12', 'float'), ('3/4', 'Fraction'), ('1200', 'str'))
    >>> number_text("'forty-two'"), number_text("True"), number_text("[1, 2]")
    ((None, 'a str'), (None, 'a bool'), (None, 'a list'))

The repr is parsed, never evaluated: `ast.literal_eval` for builtin literals, patterns for the number types a
program may reasonably return (`Fraction`, `Decimal`, numpy scalars, a sympy `Rational` printed as "3/4"). Floats
are rounded to 12 significant digits, so float noise (0.1 + 0.2) does not split a vote, and never written with an
exponent (an answer parser would read "1e-05" as 05). Infinities and NaN are not numbers.
"""

from __future__ import annotations

import ast
import math
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

__all__ = ["number_text"]

_NUMERIC_STR = re.compile(r"\s*([-+]?)\s*\$?\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)\s*")
_WRAPPED = (
    (re.compile(r"Fraction\((-?\d+), (-?\d+)\)"), lambda m: Fraction(int(m[1]), int(m[2])) if int(m[2]) else None),
    (re.compile(r"Decimal\('([^']{1,400})'\)"), lambda m: _decimal(m[1])),
    (re.compile(r"(?:np|numpy)\.(?:float|int|uint)\d*\((.{1,400})\)"), lambda m: _literal(m[1])),
    (re.compile(r"(-?\d+)/(\d+)"), lambda m: Fraction(int(m[1]), int(m[2])) if int(m[2]) else None),
)


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _decimal_text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text == "-0" else text


def number_text(returned: str) -> tuple[str | None, str]:
    """(the value as an answer, its type's name) for a number; (None, "a <type>") for anything else."""
    if returned in ("nan", "inf", "-inf"):
        return None, f"a float that is {returned}"
    value = _literal(returned) if len(returned) <= 4096 else None
    if value is None and returned != "None":
        for pattern, build in _WRAPPED:
            if (m := pattern.fullmatch(returned.strip())) is not None:
                value = build(m)
                break
        else:
            return None, "an object" if returned.startswith("<") else "not a literal"
    kind = type(value).__name__
    if isinstance(value, str):
        m = _NUMERIC_STR.fullmatch(value)
        return (_decimal_text(Decimal(m[1] + m[2].replace(",", ""))), kind) if m else (None, "a str")
    if isinstance(value, bool) or value is None:
        return None, "a bool" if isinstance(value, bool) else "None"
    if isinstance(value, int):
        return str(value), kind
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, f"a float that is {value}"
        return _decimal_text(Decimal(format(value, ".12g"))), kind
    if isinstance(value, Fraction):
        return (str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"), kind
    if isinstance(value, Decimal):
        return (_decimal_text(value), kind) if value.is_finite() else (None, f"a Decimal that is {value}")
    return None, f"a {kind}"
