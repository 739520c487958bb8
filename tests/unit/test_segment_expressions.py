"""The segment expression language: CEL conditions, definitions files, hostile input."""

from __future__ import annotations

import contextlib
import math
import string
from typing import Any

import cel
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cdpulse.segments import compiler
from cdpulse.segments.compiler import ERROR, Values
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


# --- the compiled subset against the engine ----------------------------------------------

NAMES = ("a", "b", "m", "l", "absent")
KEYS = ("a", "b", "x")
SCALARS = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([2**53, 2**53 + 1, -(2**63)]),
    st.floats(),  # NaN, infinities and -0.0 included
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 2.5, 2.0**53, float("nan"), float("inf")]),
    st.text(alphabet="abxé", max_size=2),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet="abx", max_size=1), inner, max_size=3)
    ),
    max_leaves=6,
)
NUMBERS = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 2.5, float("nan"), 2**53 + 1, 2.0**53]),
)
TEXTS = st.sampled_from(["", "a", "b", "x", "é"])
_ABSENT = object()


def _record(**typed: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Each name mostly of the type conditions expect of it, sometimes anything or absent."""
    fields = {
        name: st.one_of(strategy, strategy, strategy, VALUES, st.just(_ABSENT))
        for name, strategy in typed.items()
    }
    return st.fixed_dictionaries(fields).map(
        lambda record: {k: v for k, v in record.items() if v is not _ABSENT}
    )


RECORDS = _record(
    a=NUMBERS,
    b=TEXTS,
    m=st.dictionaries(st.sampled_from(KEYS), NUMBERS | TEXTS | st.booleans()),
    l=st.lists(NUMBERS | TEXTS | st.booleans(), max_size=3),
)

LITERALS = st.one_of(
    st.sampled_from(["true", "false", "null", "0", "1", "2", "-1", "3"]),
    st.sampled_from(["2.0", "2.5", "0.0", "-0.0", "1e3", "9007199254740993", "9.0e15"]),
    st.sampled_from(['"a"', "'b'", '""', '"é"', '"x"']),
    st.sampled_from(["[]", "[1, 2.0]", '["a", "b"]', "[true, null]", "[[1], [2.0, 'a']]"]),
)


def _member(name: str) -> st.SearchStrategy[str]:
    key = st.sampled_from(KEYS)
    return st.one_of(
        st.just(name),
        st.just(name),
        key.map(lambda k: f"{name}.{k}"),
        key.map(lambda k: f"has({name}.{k})"),
        st.sampled_from(['"a"', '"x"', "0", "1", "-1", "1.0", "true", "null"]).map(
            lambda k: f"{name}[{k}]"
        ),
    )


MEMBERS = st.sampled_from(NAMES).flatmap(_member)
RELATIONS = ["==", "!=", "<", "<=", ">", ">=", "in"]
NUMBER_LITERALS = st.sampled_from(["0", "1", "2", "-1", "2.0", "2.5", "-0.0", "9007199254740993"])
TEXT_LITERALS = st.sampled_from(['"a"', "'b'", '""', '"é"', '"x"'])
ORDER = st.sampled_from(RELATIONS[:6])
# Comparisons as conditions have them: mostly of the right types, sometimes of any.
ATOMS = st.one_of(
    st.tuples(st.just("a"), ORDER, NUMBER_LITERALS).map(" ".join),
    st.tuples(st.just("b"), ORDER, TEXT_LITERALS).map(" ".join),
    st.tuples(
        st.sampled_from(["m.a", "m.b", "m['x']"]), ORDER, NUMBER_LITERALS | TEXT_LITERALS
    ).map(" ".join),
    st.sampled_from(KEYS).map(lambda k: f"has(m.{k})"),
    st.tuples(TEXT_LITERALS | NUMBER_LITERALS, st.sampled_from(["l", "m"])).map(
        lambda t: f"{t[0]} in {t[1]}"
    ),
    st.tuples(st.sampled_from(["l[0]", "l[1]"]), ORDER, NUMBER_LITERALS | TEXT_LITERALS).map(
        " ".join
    ),
    st.tuples(MEMBERS, st.sampled_from(RELATIONS), LITERALS, st.booleans()).map(
        lambda t: f"{t[0]} {t[1]} {t[2]}" if t[3] else f"{t[2]} {t[1]} {t[0]}"
    ),
)
PARTS = st.one_of(ATOMS, LITERALS, MEMBERS)


def _binary(parts: tuple[str, str, str, bool]) -> str:
    left, operator, right, parenthesised = parts
    return f"({left}) {operator} ({right})" if parenthesised else f"{left} {operator} {right}"


def _conditions(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    junction = st.tuples(inner, st.sampled_from(["&&", "||"]), inner, st.booleans())
    return st.one_of(junction.map(_binary), junction.map(_binary), inner.map(lambda e: f"!({e})"))


def _expressions(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    operator = st.sampled_from([*RELATIONS, "&&", "||"])
    return st.one_of(
        st.tuples(inner, operator, inner, st.booleans()).map(_binary),
        inner.map(lambda e: f"!({e})"),
        inner.map(lambda e: f"[{e}, 1]"),
        st.tuples(inner, st.sampled_from(KEYS)).map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]"),
    )


# Conditions as people write them (comparisons joined by && || !), and anything at all.
CONDITIONS = st.recursive(ATOMS, _conditions, max_leaves=8)
EXPRESSIONS = st.one_of(CONDITIONS, CONDITIONS, st.recursive(PARTS, _expressions, max_leaves=8))


def _engine(source: str, record: dict[str, Any]) -> tuple[str, Any]:
    """The Rust engine's answer, reading the record as the segment code always has."""
    context = cel.Context()
    context.set_variable_resolver(record.get)
    try:
        return "value", cel.compile(source).execute(context)
    except Exception:  # the engine raises several types; all mean "an error"
        return "error", None


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types (NaN equal to NaN, lists and maps deeply)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return bool(a == b)


@settings(max_examples=1500, deadline=None)
@given(EXPRESSIONS, RECORDS)
def test_the_compiled_subset_agrees_with_the_engine(source: str, record: dict[str, Any]) -> None:
    """Generated conditions of the subset, on generated records: same value or both errors."""
    try:
        cel.compile(source)
    except ValueError:
        assume(False)  # not CEL (e.g. has() of something that is no selection)
    closure = compiler.compile(source)
    assert closure is not None, source  # everything generated is in the subset
    values = Values(record)
    assert values.modelled
    got = closure(values)
    kind, wanted = _engine(source, record)
    if kind == "error":
        assert got is ERROR, (source, record, got)
    else:
        assert _same(got, wanted), (source, record, got, wanted)


DEMO = [
    "churn_risk > 0.7 && revenue_30d > 200.0",
    '"shoes" in top_categories',
    "cart_value > 100.0",
    "orders >= 2",
    'rfm.segment == "champions" && has(consent.marketing) && consent.marketing',
]
FIELD_VALUES = {
    "churn_risk": st.floats(0, 1) | st.sampled_from([0.7, 0.71]),
    "revenue_30d": st.floats(0, 1e4) | st.sampled_from([200.0, 200.01]),
    "top_categories": st.lists(st.sampled_from(["shoes", "bags", "hats"]), max_size=3),
    "cart_value": st.floats(0, 1e3) | st.just(100.0),
    "orders": st.integers(0, 5),
    "rfm": st.fixed_dictionaries(
        {"r": st.integers(1, 5), "segment": st.sampled_from(["champions", "loyal"])}
    ),
    "consent": st.dictionaries(
        st.sampled_from(["analytics", "marketing", "personalization"]), st.booleans()
    ),
}


@settings(max_examples=500, deadline=None)
@given(st.fixed_dictionaries({}, optional=FIELD_VALUES))
def test_the_demo_conditions_decide_as_the_engine_does(record: dict[str, Any]) -> None:
    """Fields missing at random: "cannot decide" exactly where the engine cannot either."""
    for source in DEMO:
        condition = Condition.compile(source)
        assert condition.closure is not None
        try:
            wanted: bool | None = condition.run_engine(Values(record))
        except EvaluationError:
            wanted = None
        assert condition.decide(Values(record)) is wanted, (source, record)


@pytest.mark.parametrize(
    "source",
    [
        "orders > 2 && (revenue_30d >= 1e3 || !(cart_value < 10.5))",
        '"shoes" in top_categories || consent["marketing"] == true',
        "rfm.r in [4, 5] && rfm.score != '555' && -1 < orders",
        "has(consent.marketing)",
        "events_1h == 2.0 != false",
    ],
)
def test_conditions_of_the_subset_are_compiled(source: str) -> None:
    assert Condition.compile(source).closure is not None


@pytest.mark.parametrize(
    "source",
    [
        "size(top_categories) > 2",  # a function
        'top_categories.exists(c, c == "shoes")',  # a macro
        "orders > 2 ? true : false",  # a conditional
        "orders + 1 > 2",  # arithmetic
        "orders > 0x1",  # hex
        "orders > 1u",  # unsigned
        'customer_id == "a\\tb"',  # an escape
        "customer_id == r'a'",  # a raw string
        'customer_id == """a"""',  # triple quotes
        'counts == {"web": 1}',  # a map literal
        "orders > 1 // comment",
        "orders > -9223372036854775808",  # a literal beyond what the subset keeps
        "(" * 70 + "orders > 1" + ")" * 70,  # deeper than the subset goes
    ],
)
def test_the_rest_is_left_to_the_engine(source: str) -> None:
    condition = Condition.compile(source)
    assert condition.closure is None
    assert condition.decide(Values(sample())) in (True, False, None)


@pytest.mark.parametrize(
    "value",
    [(1, 2), 2**64, "\ud800", {1.0: "a"}, [object()], b"bytes"],
)
def test_a_record_the_subset_does_not_model_goes_to_the_engine(value: Any) -> None:
    values = Values({"orders": 3, "top_categories": value})
    assert not values.modelled
    condition = Condition.compile("orders > 2 || top_categories == [1]")
    assert condition.closure is not None
    assert condition.decide(values) is True  # the engine's answer: || absorbs the right side


def test_errors_are_absorbed_by_and_and_or_in_the_compiled_subset() -> None:
    cases = {
        "churn_risk > 0.5 && orders > 5": False,  # missing && false
        "orders > 5 && churn_risk > 0.5": False,
        "churn_risk > 0.5 || orders > 1": True,  # missing || true
        "churn_risk > 0.5 && orders > 1": None,  # missing && true: cannot decide
        "churn_risk > 0.5 || orders > 5": None,
        "!(churn_risk > 0.5)": None,
        "orders && false": False,  # a non-boolean is an error, absorbed too
        "orders || false": None,
        "orders > 2.5": True,  # int against double
        "revenue_7d < 3": True,  # double against int
        "revenue_30d > 1.0": None,  # NaN has no order
        "revenue_30d != revenue_30d": True,  # ... and equals nothing
        "orders == 3.0 && orders != '3'": True,
        "consent.marketing": None,  # a missing key
        "has(consent.marketing) && consent.marketing": False,
        "has(orders.x)": None,  # has() of a non-map
    }
    record = {
        "orders": 3,
        "revenue_7d": 2.5,
        "revenue_30d": float("nan"),
        "consent": {"analytics": True},
    }
    for source, expected in cases.items():
        condition = Condition.compile(source)
        assert condition.closure is not None, source
        assert condition.decide(Values(record)) is expected, source
        assert _engine(source, record) == (
            ("error", None) if expected is None else ("value", expected)
        )
