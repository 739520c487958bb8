"""The segment expression language: CEL conditions, definitions files, hostile input."""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.segments.definitions import DefinitionError, parse
from cdpulse.segments.expressions import (
    MAX_LENGTH,
    Condition,
    EvaluationError,
    ExpressionError,
)
from cdpulse.segments.fields import sample

RECORD = {
    "churn_risk": 0.8,
    "revenue_30d": 250.0,
    "orders": 3,
    "top_categories": ["shoes", "bags"],
    "consent": {"marketing": True},
    "rfm": {"r": 5, "f": 4, "m": 4, "score": "544", "segment": "champions"},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("churn_risk > 0.7 && revenue_30d > 200.0", True),
        ("churn_risk > 0.9 || revenue_30d > 300.0", False),
        ('"shoes" in top_categories', True),
        ('"hats" in top_categories', False),
        ("orders >= 3 && orders < 4", True),
        ("orders > 2.5", True),  # int against double compares numerically
        ('rfm.segment == "champions" && rfm.r == 5', True),
        ("consent.marketing", True),
        ("has(consent.analytics) && consent.analytics", False),
        ('top_categories.exists(c, c.startsWith("ba"))', True),
        ("size(top_categories) == 2", True),
    ],
)
def test_conditions_evaluate_as_cel_defines_them(source: str, expected: bool) -> None:
    assert Condition.compile(source).matches(RECORD) is expected


def test_a_missing_field_cannot_be_decided() -> None:
    condition = Condition.compile("churn_risk > 0.7")
    with pytest.raises(EvaluationError):
        condition.matches({"orders": 1})
    # ... but CEL's commutative && and || absorb the error when the other side decides.
    assert Condition.compile("orders > 5 && churn_risk > 0.7").matches({"orders": 1}) is False


@pytest.mark.parametrize(
    ("source", "line", "column", "reason"),
    [
        ("churn_risk >", 1, 13, "Syntax error"),
        ("orders > 2 &&\n  revenu_30d > 1.0", 2, 3, "did you mean 'revenue_30d'"),
        ("__import__('os').system('true')", 1, 1, "unknown function '__import__'"),
        ("orders > 1 || open('/etc/passwd') == ''", 1, 15, "unknown function 'open'"),
        ("orders + 1", 1, 1, "not true/false"),
        ("", 1, 1, "empty"),
        ("x" * (MAX_LENGTH + 1), 1, 1, "at most"),
    ],
)
def test_bad_conditions_name_where_and_why(
    source: str, line: int, column: int, reason: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        Condition.compile(source)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert reason in caught.value.reason


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(ExpressionError):
        Condition.compile("(" * 5000 + "orders > 1" + ")" * 5000)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=string.printable + "é∑\u0000\ud7ff", max_size=200))
def test_any_text_compiles_or_is_refused_cleanly(source: str) -> None:
    """Hostile text never crashes the process (a Rust panic would surface as BaseException)."""
    try:
        condition = Condition.compile(source)
    except ExpressionError:
        return
    with contextlib.suppress(EvaluationError):
        assert isinstance(condition.matches(sample()), bool)


RECORD_2 = {"orders": 2, "revenue_30d": 50.0, "top_categories": ["b"]}
LEAVES = [
    ("orders > 1", True),
    ("revenue_30d < 10.0", False),
    ('"a" in top_categories', False),
    ("true", True),
]


def _combine(pair: tuple[tuple[str, bool], str, tuple[str, bool]]) -> tuple[str, bool]:
    (left, lv), op, (right, rv) = pair
    return f"({left} {op} {right})", (lv and rv) if op == "&&" else (lv or rv)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.sampled_from(LEAVES),
        lambda inner: st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(_combine),
        max_leaves=30,
    )
)
def test_generated_conditions_agree_with_their_truth_table(formula: tuple[str, bool]) -> None:
    """Each generated formula carries its value, computed alongside from the leaves' values."""
    source, value = formula
    assert Condition.compile(source).matches(RECORD_2) is value


FILE = """\
rfm: true
segments:
  - name: high_value_at_risk
    description: spends, but the churn model is worried
    when: churn_risk > 0.7 && revenue_30d > 200.0
  - name: shoe_lovers
    when: '"shoes" in top_categories'
"""


def test_a_definitions_file_reads_into_a_book() -> None:
    book = parse(FILE)
    assert [s.name for s in book.segments] == ["high_value_at_risk", "shoe_lovers"]
    assert book.names[0] == "champions" and book.names[-1] == "shoe_lovers"
    assert book.segments[0].line == 3
    json_book = parse('{"rfm": false, "segments": [{"name": "big", "when": "orders > 9"}]}')
    assert json_book.names == ("big",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            FILE + "  - name: vip\n    when: |\n      orders > 2 &&\n        revenu_30d > 1.0\n",
            "<segments>:11: segment 'vip': column 3: unknown field 'revenu_30d'",
        ),
        (
            FILE + "  - name: shoe_lovers\n    when: orders > 1\n",
            "<segments>:8: segment 'shoe_lovers': it is defined twice",
        ),
        (FILE + "  - name: at_risk\n    when: orders > 1\n", "an RFM segment has that id"),
        (FILE + "  - name: Bad-Name\n    when: orders > 1\n", "<segments>:8: segment name"),
        (
            FILE + "  - name: ok\n    when: orders > 1\n    where: x\n",
            "<segments>:10: segment 'ok': unknown key 'where'",
        ),
        (FILE + "  - name: ok\n    when: 3\n", "'when' must be a CEL condition"),
        ("segments: [\n", "not valid YAML or JSON"),
        ("rfm: maybe\n", "<segments>:1: rfm must be true or false"),
        ("sgements: []\n", "unknown key 'sgements'"),
    ],
)
def test_a_bad_definition_names_the_line_and_the_reason(text: str, message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse(text)
    assert message in str(caught.value)
