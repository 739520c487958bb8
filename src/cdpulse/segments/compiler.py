r"""CEL's common subset compiled into Python closures: the fast path of a condition.

Handing values to the Rust engine costs more than evaluating them: converting a double
took ~1.3 us here, a list of three strings or a small map ~5-8 us, so the demo's five
conditions spent ~25 us a customer in conversions alone, against ~0.2 us executing.
Most conditions compare fields with literals and join the comparisons with ``&&`` and
``||``; this module compiles that subset into closures over the Python values:

* literals: ``true``, ``false``, ``null``, decimal ints, doubles (``2.5``, ``1e3``),
  strings in single or double quotes without escapes, lists ``[a, b]``;
* fields, ``a.b`` and ``a[k]`` on maps and lists, ``has(a.b)``;
* ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in`` (lists, maps), ``!``, ``&&``, ``||``,
  and ``-`` before a number.

Anything else (arithmetic, functions, macros, ``?:``, map literals, escapes, bytes,
``1u``, comments) is not compiled: ``compile`` returns None and the engine runs it.
``segments.syntax`` parses; this module gives the nodes their meaning.

A closure reads a ``Values``: ``values[name]`` is a field's value, or ``ERROR`` when the
record has no such field. The values must be *modelled*: bool, an int within 64 bits,
float, str (Unicode text), None, lists of them and maps from str to them (``modelled``
checks; ``Values.modelled`` says so of a record; a record with anything else goes to
the engine whole). On modelled values the semantics are the Rust engine's, and a
property test holds the two together on generated conditions and records:

* An error is a value, ``ERROR``: a missing field reads as one, and an operation not
  defined for its operands (``1 < "a"``, ``!3``, ordering a NaN, a missing map key)
  yields one. ``&&`` and ``||`` absorb it when another operand decides (``false &&
  ERROR`` is false, either way round); everything else passes it on.
* ``==`` across types is false, except int against double, compared as doubles (the
  engine converts the int, so 2**53 + 1 == 2.0**53); ``in`` a list is that equality.

>>> closure = compile('orders >= 2 && "shoes" in top_categories')
>>> closure(Values({"orders": 3, "top_categories": ["shoes"]}))
True
>>> values = Values({"orders": 3})          # top_categories is missing ...
>>> closure(values), compile("orders > 5 && churn_risk > 0.5")(values)
(ERROR, False)
>>> compile("size(top_categories) > 2") is None   # a function: the engine's
True
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Final

from cdpulse.segments.syntax import I64_MAX, I64_MIN, Node, OutsideSubset, parse


class _Error:
    """The type of ``ERROR``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ERROR"


ERROR: Final = _Error()


class Values(dict[str, Any]):
    """A record closures can read: a missing name reads as ``ERROR``, never raises.

    ``Values(record)`` copies a mapping; ``None`` means absent, as it does to the
    engine's variable resolver (which cannot pass a null). ``modelled`` is whether
    every value is one the closures model; subclasses computing their values
    (``fields.FieldValues``) guarantee it by construction.
    """

    __slots__ = ("modelled",)

    def __init__(self, record: Mapping[str, Any] | None = None) -> None:
        super().__init__((k, v) for k, v in (record or {}).items() if v is not None)
        self.modelled = all(modelled(v) for v in self.values())

    def __missing__(self, name: str) -> Any:
        return ERROR


Closure = Callable[[Values], Any]


def modelled(value: Any) -> bool:
    """Whether the closures know what CEL makes of ``value`` (see the module docstring)."""
    kind = type(value)
    if kind is bool or kind is float or value is None:
        return True
    if kind is int:
        return bool(I64_MIN <= value <= I64_MAX)
    if kind is str:
        try:
            value.encode("utf-8")  # a lone surrogate is no Unicode text
        except UnicodeEncodeError:
            return False
        return True
    try:
        if kind is list:
            return all(modelled(x) for x in value)
        if kind is dict:
            return all(type(k) is str and modelled(k) and modelled(v) for k, v in value.items())
    except RecursionError:
        return False
    return False


# --- the operations on modelled values ------------------------------------------------


def equal(a: Any, b: Any) -> Any:
    """CEL ``a == b``: True, False, or ERROR."""
    kind = type(a)
    if kind is type(b):
        if kind is list:
            return len(a) == len(b) and all(equal(x, y) is True for x, y in zip(a, b, strict=True))
        if kind is dict:
            return len(a) == len(b) and all(
                key in b and equal(value, b[key]) is True for key, value in a.items()
            )
        return ERROR if a is ERROR else a == b
    if kind is int and type(b) is float:
        return float(a) == b  # as the engine does: the int becomes a double
    if kind is float and type(b) is int:
        return a == float(b)
    return ERROR if a is ERROR or b is ERROR else False


def not_equal(a: Any, b: Any) -> Any:
    result = equal(a, b)
    return result if result is ERROR else not result


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def ordered(a: Any, b: Any) -> Any:
        kind = type(a)
        if kind is type(b):
            if kind is float:
                return ERROR if a != a or b != b else compare(a, b)  # NaN has no order
            if kind is int or kind is str or kind is bool:
                return compare(a, b)  # str: code point order, UTF-8's byte order
        elif kind is int and type(b) is float:
            return ERROR if b != b else compare(float(a), b)
        elif kind is float and type(b) is int:
            return ERROR if a != a else compare(a, float(b))
        return ERROR

    return ordered


def contains(item: Any, collection: Any) -> Any:
    """CEL ``item in collection``."""
    kind = type(collection)
    if kind is list:
        if item is ERROR:
            return ERROR
        if type(item) is str:
            return item in collection  # a str equals only a str, in Python as in CEL
        return any(equal(item, x) is True for x in collection)
    if kind is dict:
        key = type(item)
        if key is str:
            return item in collection
        # Map keys are strings, so an int or a bool key just misses; a double, null,
        # list or map is no map key at all.
        return False if key is int or key is bool else ERROR
    return ERROR


def index(container: Any, key: Any) -> Any:
    """CEL ``container[key]`` and ``container.key``."""
    kind = type(container)
    if kind is dict:
        return container.get(key, ERROR) if type(key) is str else ERROR
    if kind is list and type(key) is int:
        return container[key] if 0 <= key < len(container) else ERROR
    return ERROR


def negate(value: Any) -> Any:
    return not value if value is True or value is False else ERROR


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": equal,
    "!=": not_equal,
    "<": _ordering(operator.lt),
    "<=": _ordering(operator.le),
    ">": _ordering(operator.gt),
    ">=": _ordering(operator.ge),
    "in": contains,
}
_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


# --- closures --------------------------------------------------------------------------


def compile(source: str) -> Closure | None:
    """The closure of ``source``, or None when it is outside the subset.

    ``source`` must already compile in the engine: the subset's parser trusts it to be
    valid CEL and only decides whether it understands all of it.
    """
    try:
        return _closure(parse(source))
    except OutsideSubset:
        return None


def _closure(node: Node) -> Closure:
    kind = node[0]
    if kind == "const":
        value = node[1]
        return lambda values: value
    if kind == "name":
        # itemgetter reads values[name] in C (a missing name still goes to __missing__).
        return operator.itemgetter(node[1])
    if kind == "list":
        if all(item[0] == "const" for item in node[1]):
            constant = [item[1] for item in node[1]]  # never mutated: operations only read
            return lambda values: constant
        items = [_closure(item) for item in node[1]]

        def build(values: Values) -> Any:
            built = [item(values) for item in items]
            return ERROR if any(x is ERROR for x in built) else built

        return build
    if kind == "select":
        if node[1][0] == "name":
            return _field_of_field(node[1][1], node[2])
        return _binary(index, node[1], ("const", node[2]))
    if kind == "index":
        return _binary(index, node[1], node[2])
    if kind == "compare":
        return _comparison(node[1], node[2], node[3])
    if kind == "has":
        return _has(_closure(node[1]), node[2])
    if kind == "not":
        operand = _closure(node[1])
        return lambda values: negate(operand(values))
    if kind in ("and", "or"):
        operands = [_closure(n) for n in node[1]]
        if len(operands) == 2:
            return _junction2(operands[0], operands[1], decisive=kind == "or")
        return _junction(operands, decisive=kind == "or")
    raise AssertionError(kind)


def _has(container: Closure, field: str) -> Closure:
    def closure(values: Values) -> Any:
        value = container(values)
        return field in value if type(value) is dict else ERROR

    return closure


def _field_of_field(name: str, field: str) -> Closure:
    """``name.field``: a map's entry (``rfm.segment``), read in place."""

    def select(values: Values) -> Any:
        container = values[name]
        return container.get(field, ERROR) if type(container) is dict else ERROR

    return select


def _comparison(symbol: str, left: Node, right: Node) -> Closure:
    """A comparison; against a literal, the usual case, it gets a closure of its own."""
    if right[0] == "const":
        constant = right[1]
        if symbol in _ORDER and type(constant) in (int, float):
            return _against_number(_closure(left), _ORDER[symbol], _COMPARE[symbol], constant)
        if symbol == "==" and type(constant) is str:
            return _equals_text(_closure(left), constant)
    if symbol == "in" and left[0] == "const" and type(left[1]) is str:
        return _text_in(left[1], _closure(right))
    return _binary(_COMPARE[symbol], left, right)


def _against_number(
    read: Closure,
    compare: Callable[[Any, Any], bool],
    general: Callable[[Any, Any], Any],
    number: int | float,
) -> Closure:
    as_double = float(number)  # against a double, an int literal is one too
    number_is_int = type(number) is int

    def closure(values: Values) -> Any:
        value = read(values)
        kind = type(value)
        if kind is float:
            return compare(value, as_double) if value == value else ERROR
        if kind is int and number_is_int:
            return compare(value, number)
        return general(value, number)

    return closure


def _equals_text(read: Closure, text: str) -> Closure:
    def closure(values: Values) -> Any:
        value = read(values)
        return value == text if type(value) is str else equal(value, text)

    return closure


def _text_in(text: str, read: Closure) -> Closure:
    def closure(values: Values) -> Any:
        collection = read(values)
        kind = type(collection)
        # In a list a str equals only a str; in a map (keys are str) it is a key.
        return text in collection if kind is list or kind is dict else ERROR

    return closure


def _binary(operation: Callable[[Any, Any], Any], left: Node, right: Node) -> Closure:
    """``operation`` over two operands; a field or a literal is read in place."""
    if left[0] == "name" and right[0] == "const":
        name, constant = left[1], right[1]
        return lambda values: operation(values[name], constant)
    if right[0] == "const":
        first, constant = _closure(left), right[1]
        return lambda values: operation(first(values), constant)
    if left[0] == "const":
        constant, second = left[1], _closure(right)
        return lambda values: operation(constant, second(values))
    first, second = _closure(left), _closure(right)
    return lambda values: operation(first(values), second(values))


def _junction2(first: Closure, second: Closure, decisive: bool) -> Closure:
    """``first && second`` (decisive False) or ``first || second`` (decisive True)."""

    other = not decisive

    def junction(values: Values) -> Any:
        a = first(values)
        if a is decisive:
            return decisive
        b = second(values)
        if b is decisive:
            return decisive
        return other if a is other and b is other else ERROR

    return junction


def _junction(operands: list[Closure], decisive: bool) -> Closure:
    """``&&`` (decisive False) or ``||`` (decisive True) over all operands, commutatively:
    any operand that is ``decisive`` decides; all of them ``not decisive`` decide the
    other way; anything else (an error, a non-boolean) leaves an error."""
    other = not decisive

    def junction(values: Values) -> Any:
        undecided = False
        for operand in operands:
            result = operand(values)
            if result is decisive:
                return decisive
            if result is not other:
                undecided = True
        return ERROR if undecided else other

    return junction
