"""Math answers: extraction priorities, value equivalence, voting keys, and that sympy only sees safe input."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thinktank.verifiers.math import MathVerifier, answers_equivalent, canonical_answer, extract_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"First 1/2, so \boxed{\frac{1}{2}} is it.", r"\frac{1}{2}"),
        (r"\boxed{1} then corrected: \boxed{\frac{3}{\sqrt{4}}}", r"\frac{3}{\sqrt{4}}"),  # last box, nested braces
        ("Work: 3 + 4 = 7\n#### 1,234\n", "1,234"),
        ("#### 5\n#### 6", "6"),
        ("So the answer is $42.50. Done, 7 more words 9.", "$42.50"),
        ("**Answer:** 17 apples", "17 apples"),
        ("**Final Answer**: 3**2", "3**2"),
        ("The answer is **12**.", "12"),
        ("Final answer: x = 5", "x = 5"),
        ("The answer is that John has 42 apples left.", "42"),
        ("The answer is yes.", "yes"),
        ("I tried 3, then 4, and ended with -5.", "-5"),
        ("He paid 1,200 dollars", "1,200"),
        ("no digits at all", None),
        ("", None),
        (r"Both \boxed{7} and #### 8: the box wins", "7"),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("3/4", "0.75"),
        (r"\frac{1}{2}", "0.5"),
        (r"\dfrac{3}{4}", "3/4"),
        (r"\frac12", "0.5"),
        ("$1,200", "1200"),
        ("1,234,567.5", "1234567.50"),
        ("42 apples", "42"),
        ("€7", "7.0"),
        ("50%", "50"),
        ("50%", "0.5"),  # exactly one side has '%': x% may mean x/100
        (r"12\%", "0.12"),
        ("2 1/2", "2.5"),
        ("x = 5", "5"),
        ("-3", "−3"),  # unicode minus
        ("2x+1", "1 + 2*x"),
        ("(x+1)^2", "x^2 + 2x + 1"),
        ("sqrt(2)/2", r"\frac{\sqrt{2}}{2}"),
        ("2pi", r"2\pi"),
        ("(1, 2)", "[1,2.0]"),
        ("Yes", "yes"),
        ("0.1", "1e-1"),
        ("2^10", "1024"),
        ("3**2", "9"),
        ("1/3", "0.3333333333"),
        ("0.30000000000000004", "0.3"),  # float noise is tolerated
    ],
)
def test_equivalent(a: str, b: str) -> None:
    assert answers_equivalent(a, b)
    assert answers_equivalent(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1000000", "1000001"),  # integers are exact, whatever the relative tolerance
        ("0.33", "1/3"),
        ("0.333333", "1/3"),  # rounding is not
        ("1000000.5", "1000001.5"),
        ("0.5", "50"),  # no percent sign on either side: no scaling
        ("50%", "5"),
        ("2x", "2"),
        ("x^2", "2x"),
        ("(1, 2)", "(2, 1)"),
        ("(1, 2)", "(1, 2, 3)"),
        ("yes", "no"),
        ("5", "five"),
        ("7", None),
        (None, None),
    ],
)
def test_not_equivalent(a: str | None, b: str | None) -> None:
    assert not answers_equivalent(a, b)
    assert not answers_equivalent(b, a)


def test_tolerance_is_configurable() -> None:
    assert not answers_equivalent("3.14", "pi")
    assert answers_equivalent("3.14", "pi", rel_tol=1e-3)


@pytest.mark.parametrize(
    "replies",
    [
        ["#### 0.75", r"\boxed{\frac{3}{4}}", "The answer is 3/4.", "Answer: 0.750"],
        ["#### 1,200", "The answer is $1200.", "so 1200 dollars\n#### 1200.00"],
        ["#### 50%", "The answer is 50 percent", "Answer: 50"],
    ],
)
def test_canonical_answer_groups_equal_values(replies: list[str]) -> None:
    keys = {canonical_answer(r) for r in replies}
    assert len(keys) == 1 and None not in keys


def test_canonical_answer_separates_different_values() -> None:
    replies = ["#### 3", "#### 4", r"\boxed{\sqrt{2}}", "Answer: 2x+1", "Answer: yes"]
    keys = [canonical_answer(r) for r in replies]
    assert len(set(keys)) == len(keys)
    assert canonical_answer("nothing here") is None


@settings(max_examples=60, deadline=None)
@given(st.fractions(min_value=-(10**6), max_value=10**6, max_denominator=50))
def test_representations_of_a_fraction_agree(value: Fraction) -> None:
    plain = f"{value.numerator}/{value.denominator}"
    latex = rf"\frac{{{value.numerator}}}{{{value.denominator}}}"
    decimal = repr(float(value))
    assert answers_equivalent(plain, latex)
    assert answers_equivalent(plain, decimal)
    assert canonical_answer(f"#### {plain}") == canonical_answer(rf"\boxed{{{latex}}}")
    assert not answers_equivalent(plain, str(value + 1))


@pytest.mark.parametrize(
    "hostile",
    [
        "__import__('os').system('touch {marker}')",
        "().__class__.__bases__[0].__subclasses__()",
        "lambda: open('{marker}', 'w')",
        "9^9^9^9",
        "(2^99)^99^99",
        "10**10**10",
        "x" * 5000,
        "1e999999999",
        "1 a " * 20000,
    ],
)
def test_hostile_answers_are_text_not_code(hostile: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = hostile.replace("{marker}", str(marker))
    start = time.perf_counter()
    assert not answers_equivalent(text, "1")
    assert canonical_answer(f"Answer: {text}") is not None
    assert time.perf_counter() - start < 2.0
    assert not marker.exists()


def test_grade_verdicts() -> None:
    verifier = MathVerifier()
    good = verifier.grade("She pays 3 * 400 = $1,200.\n#### 1200", "1200")
    assert good.passed and good.score == 1.0 and good.details["extracted"] == "1200"
    bad = verifier.grade("#### 1100", "1200")
    assert not bad.passed and bad.score == 0.0 and "does not match" in bad.reason
    missing = verifier.grade("I am not sure.", "1200")
    assert not missing.passed and "no final answer" in missing.reason
    assert verifier.grade(r"\boxed{0.5}", r"so \boxed{\frac{1}{2}}").passed  # gold in boxed form is unwrapped
    assert verifier.grade("#### 18", "Janet sells 16 - 3 - 4 = 9 eggs... \n#### 18").passed


async def test_check_matches_grade() -> None:
    verdict = await MathVerifier().check("The answer is 7.", "7")
    assert verdict.passed


@pytest.mark.parametrize("text", ["i/0", "x/0", "(1+i)/0", "i/0+1", "-x/0", "0/0"])
def test_division_by_zero_is_text_not_a_value(text: str) -> None:
    # zoo*i - zoo*i is nan, so as a sympy value "i/0" would not equal itself (hypothesis found this in CI)
    assert answers_equivalent(text, text)
    assert not answers_equivalent(text, "0")


def test_different_divisions_by_zero_differ() -> None:
    assert not answers_equivalent("1/0", "2/0")
    assert not answers_equivalent("x/0", "y/0")


@settings(max_examples=200, deadline=2000)
@given(st.text(alphabet="0123456789e^*/()+-. xpisqrt!,%$\\{}", max_size=40))
def test_arbitrary_answers_never_raise_or_hang(text: str) -> None:
    assert answers_equivalent(text, text)  # reflexive, whatever the input
    assert canonical_answer(f"Answer: {text}") is None or isinstance(canonical_answer(f"Answer: {text}"), str)
