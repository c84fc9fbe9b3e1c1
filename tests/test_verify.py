"""Edge cases, property tests and bad input for ktae_lab.verify (the numeric reward)."""
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from ktae_lab.verify import extract_answer, parse_number, numeric_verifier


# ---------------------------------------------------------------- extract_answer
@pytest.mark.parametrize("text, expected", [
    (r"\boxed{5}", "5"),
    (r"first \boxed{1} then \boxed{2}", "2"),                       # the last box wins
    (r"\boxed{\frac{1}{\sqrt{4}}}", r"\frac{1}{\sqrt{4}}"),         # nested braces
    (r"\boxed { 7 }", "7"),
    (r"\fbox{9}", "9"),
    (r"\boxed{3} and later \boxed{4", "3"),                         # an unclosed box is skipped
    (r"The answer is 4. Also \boxed{5}", "5"),                      # a box beats a phrase
    ("The answer is 12.", "12"),
    ("the ANSWER is 12", "12"),
    ("Final answer: 3/4", "3/4"),
    ("**Answer:** 8", "8"),
    ("**The answer is 8.**", "8"),
    ("The answer is $3.50$.", "3.50"),
    (r"The answer is \(x = 2\).", "x = 2"),
    ("The answer is 1. Then the answer is 2.", "2"),               # the last phrase wins
    ("The answer is 2.5. Next sentence.", "2.5"),                  # decimal point is not a sentence end
    ("The answer is 7\nmore text", "7"),
    ("The answer is", None),                                       # nothing after the phrase
    ("No final statement here: 42", None),
    ("", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_rejects_non_str():
    with pytest.raises(TypeError, match="`text` must be a str"):
        extract_answer(None)


# ---------------------------------------------------------------- parse_number
@pytest.mark.parametrize("s, value", [
    ("0", 0.0), ("-0", 0.0), ("007", 7.0), ("3.", 3.0), ("+4", 4.0), ("1.5e-3", 1.5e-3),
    ("1,000", 1000.0), ("-1,234.5", -1234.5), (r"1{,}000", 1000.0),
    ("22/7", 22 / 7), ("-1/2", -0.5), ("1/-2", -0.5), ("3 / 4", 0.75), ("2 3/4", 2.75),
    (r"\frac{-1}{2}", -0.5), (r"\tfrac{1}{8}", 0.125), (r"\frac{1.5}{3}", 0.5), (r"\frac{1}{2}\%", 0.005),
    ("12.5%", 0.125), ("50 percent", 0.5), ("1/4%", 0.0025),
    ("$1,000", 1000.0), (r"\$3", 3.0), ("-$3", -3.0), (r"$\frac{1}{2}$", 0.5),
    ("12 cm", 12.0), ("about 12", 12.0), (r"12 \text{ apples}", 12.0), ("y = -2", -2.0),
    ("  42  ", 42.0), ("42.", 42.0),
])
def test_parse_number_values(s, value):
    got = parse_number(s)
    assert got is not None and math.isclose(got, value, rel_tol=1e-12, abs_tol=1e-15), (s, got)


@pytest.mark.parametrize("s", [
    "", "   ", "abc", "five", "1,2", "1,0000", "12,34.5", "2+3", "2 - 3", "3 and 4", "1/0", "0/0", r"\frac{1}{0}",
    r"\frac{a}{b}", r"\frac{1}{2}+1", "inf", "-inf", "nan", "--3", "10 feet 5 inches", "3, 4", "$",
])
def test_parse_number_rejects(s):
    assert parse_number(s) is None


def test_parse_number_rejects_non_str():
    with pytest.raises(TypeError, match="`s` must be a str"):
        parse_number(3.0)


# ---------------------------------------------------------------- numeric_verifier
@pytest.mark.parametrize("completion, ref, ok", [
    (r"\boxed{1200}", "1,200", True),
    (r"\boxed{1,200}", "1200", True),
    ("The answer is 0.75", "3/4", True),
    ("The answer is 3/4", r"\frac{3}{4}", True),
    ("The answer is 12 apples.", "12", True),
    ("The answer is $5.", "5", True),
    ("The answer is 5.0", "5", True),
    ("The answer is 5.0001", "5", False),
    ("The answer is 0", "0", True),
    ("The answer is -0.0", "0", True),
    ("The answer is 40%", "40", True),
    ("The answer is 40%", "0.4", True),
    ("The answer is 40", "40%", True),
    ("The answer is 0.4", "40%", True),
    ("The answer is 40%", "40%", True),
    ("The answer is 4%", "40", False),
    ("The answer is 12", "13", False),
    ("I get 12.", "12", False),                       # no final answer stated
    (r"\boxed{Blue}", "blue", True),                  # string fallback
    (r"\boxed{2+3}", "5", False),                     # no algebra
    ("The answer is seven", "7", False),              # no number words
])
def test_numeric_verifier(completion, ref, ok):
    assert numeric_verifier(completion, ref) is ok


def test_numeric_verifier_rel_tol():
    assert numeric_verifier("The answer is 100.4", "100", rel_tol=1e-2)
    assert not numeric_verifier("The answer is 100.4", "100", rel_tol=1e-3)
    assert numeric_verifier("The answer is 3", 3) and numeric_verifier("The answer is 2.5", 2.5)


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(completion_text=None, reference_answer="1"), TypeError, "`completion_text` must be a str"),
    (dict(completion_text="x", reference_answer=None), ValueError, "`reference_answer` is required"),
    (dict(completion_text="x", reference_answer="  "), ValueError, "`reference_answer` is empty"),
    (dict(completion_text="x", reference_answer=True), TypeError, "`reference_answer` must be a str"),
    (dict(completion_text="x", reference_answer=["1"]), TypeError, "`reference_answer` must be a str"),
    (dict(completion_text="x", reference_answer="1", rel_tol=-1.0), ValueError, "`rel_tol` must be a float >= 0"),
    (dict(completion_text="x", reference_answer="1", rel_tol=float("nan")), ValueError, "`rel_tol`"),
])
def test_numeric_verifier_bad_input(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        numeric_verifier(**kwargs)


# ---------------------------------------------------------------- properties
def _forms(n: int, d: int):
    """Several ways to write the rational n/d (d > 0) as text, with the value each must parse to."""
    v = n / d
    sign = "-" if n < 0 else ""
    forms = [f"{n}/{d}", rf"\frac{{{n}}}{{{d}}}", rf"{sign}\frac{{{abs(n)}}}{{{d}}}", rf"\dfrac{{{n}}}{{{d}}}",
             rf"${n}/{d}$"]
    if d == 1:
        forms += [str(n), f"{n:,}", f"{sign}${abs(n):,}", f"{n}.0", f"{n} apples", f"x = {n}"]
    return v, forms


@settings(max_examples=200, deadline=None)
@given(n=st.integers(-10**7, 10**7), d=st.sampled_from([1, 1, 2, 3, 4, 7, 8, 100, 1000]))
def test_formats_round_trip(n, d):
    v, forms = _forms(n, d)
    for s in forms:
        got = parse_number(s)
        assert got is not None and math.isclose(got, v, rel_tol=1e-12, abs_tol=1e-12), (s, got, v)


@settings(max_examples=200, deadline=None)
@given(x=st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False))
def test_float_repr_round_trips(x):
    for s in (repr(x), f"{x:.6f}", f"{x:,.3f}", f"{x:e}"):
        got = parse_number(s)
        assert got is not None and math.isclose(got, float(s.replace(",", "")), rel_tol=1e-12, abs_tol=1e-300), s


@settings(max_examples=150, deadline=None)
@given(n=st.integers(-10**6, 10**6), d=st.integers(1, 50), wrap=st.sampled_from(
    [r"\boxed{{{}}}", "The answer is {}.", "Final answer: {}", "**Answer:** ${}$", "So... the answer is {}\n"]))
def test_verifier_accepts_equal_rejects_different(n, d, wrap):
    ref = str(Fraction(n, d)) if d > 1 else str(n)
    assert numeric_verifier(wrap.format(f"{n}/{d}"), ref)
    assert not numeric_verifier(wrap.format(f"{n + 1}/{d}"), ref, rel_tol=1e-9)  # 1/n apart: below default tol


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_never_crashes_on_any_text(text):
    ans = extract_answer(text)
    assert ans is None or isinstance(ans, str)
    v = parse_number(text)
    assert v is None or isinstance(v, float)
    assert numeric_verifier(text, "1") in (True, False)
