r"""Segment conditions in Google's Common Expression Language (CEL), never Python ``eval``.

CEL is the expression language of Kubernetes admission policies and Envoy: side-effect
free, no loops beyond bounded macros over the record's own lists, no I/O, and a
standard with several implementations. The engine here is the Rust one
(``common-expression-language``): it checks every condition at start-up, and a compile
error carries line and column. Handing it a record's values costs more than evaluating
them, so a condition in CEL's common subset (comparisons, ``&&``, ``||``, ``!``, ``in``,
``has()``, fields and literals) also runs as Python closures (``segments.compiler``),
which the engine backs for everything else; a property test holds the two together.

>>> vip = Condition.compile("churn_risk > 0.7 && revenue_30d > 200.0")
>>> vip.matches({"churn_risk": 0.8, "revenue_30d": 250.0})
True
>>> Condition.compile('"shoes" in top_categories').matches({"top_categories": ["bags"]})
False
>>> vip.decide(Values({"revenue_30d": 250.0}))   # churn_risk is missing: cannot decide
>>> vip.reads, vip.closure is not None
(('churn_risk', 'revenue_30d'), True)
>>> try:
...     Condition.compile("orders > 2 &&\n  revenu_30d > 200.0")
... except ExpressionError as error:
...     print(error)
line 2, column 3: unknown field 'revenu_30d'; did you mean 'revenue_30d'?
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cel

from cdpulse.segments import compiler
from cdpulse.segments.compiler import ERROR, Closure, Values
from cdpulse.segments.fields import FIELDS, sample

# Long enough for any honest condition; bounds parse time and memory on hostile input.
MAX_LENGTH = 4096
_LOCATION = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")
# Names bound by CEL's comprehension macros: `top_categories.exists(c, c == "shoes")`.
# CEL's standard functions (operators have names like `_&&_`, not identifiers). A call
# to anything else can only fail at evaluation, so it is refused at start-up.
FUNCTIONS = frozenset(
    {
        *("size", "contains", "startsWith", "endsWith", "matches", "lowerAscii", "upperAscii"),
        *("trim", "split", "join", "replace", "indexOf", "lastIndexOf", "substring"),
        *("int", "uint", "double", "string", "bool", "bytes", "dyn", "type", "max", "min"),
        *("duration", "timestamp", "getFullYear", "getMonth", "getDayOfMonth", "getDate"),
        *("getDayOfWeek", "getDayOfYear", "getHours", "getMinutes", "getSeconds"),
        *("getMilliseconds", "has", "all", "exists", "exists_one", "map", "filter"),
    }
)
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


class ExpressionError(ValueError):
    """A condition that cannot be used: where (line, column) and why."""

    def __init__(self, reason: str, line: int = 1, column: int = 1) -> None:
        super().__init__(f"line {line}, column {column}: {reason}")
        self.reason = reason
        self.line = line
        self.column = column


class EvaluationError(RuntimeError):
    """A condition that raised on one record (a missing field, a type mismatch)."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled CEL condition over the fields of ``cdpulse.segments.fields``.

    ``reads`` are the fields it reads; ``closure`` is the condition compiled into
    Python when it is in the common subset (None: the engine's ``program`` runs it).
    """

    source: str
    program: cel.Program
    reads: tuple[str, ...]
    closure: Closure | None

    @classmethod
    def compile(cls, source: str, fields: Iterable[str] = FIELDS) -> Condition:
        """Compile ``source``; raise ExpressionError naming the line and the fix."""
        if not isinstance(source, str) or not source.strip():
            raise ExpressionError("the condition is empty; write a CEL expression")
        if len(source) > MAX_LENGTH:
            raise ExpressionError(f"the condition is {len(source)} chars; at most {MAX_LENGTH}")
        try:
            program = cel.compile(source)
        except (ValueError, RuntimeError, RecursionError) as exc:
            raise _located(str(exc)) from None
        known = set(fields)
        bound = set(_BOUND.findall(source))
        for name in program.variables():
            if name not in known and name not in bound:
                raise ExpressionError(_unknown(name, known), *_position(source, name))
        for name in program.functions():
            if name.isidentifier() and name not in FUNCTIONS:
                raise ExpressionError(
                    f"unknown function {name!r}; CEL's standard functions (size, contains, "
                    "startsWith, matches, ...) are the ones available",
                    *_position(source, name),
                )
        reads = tuple(name for name in program.variables() if name in known)
        condition = cls(source, program, reads, compiler.compile(source))
        condition._check_boolean()
        return condition

    def decide(self, values: Values) -> bool | None:
        """Whether the record satisfies the condition; None when it cannot be decided."""
        if self.closure is not None and values.modelled:
            result = self.closure(values)
            return result if result is True or result is False else None
        try:
            return self.run_engine(values)
        except EvaluationError:
            return None

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` satisfies the condition; EvaluationError when it cannot say."""
        values = Values(record)
        decided = self.decide(values)
        if decided is not None:
            return decided
        return self.run_engine(values)

    def run_engine(self, values: Values) -> bool:
        """The engine's answer alone, for ``values``; EvaluationError when it cannot say."""
        try:
            result = self.program.execute(self._context(values))
        except Exception as exc:  # the engine raises several types; all mean "cannot say"
            raise EvaluationError(str(exc).split("\n", 1)[0]) from None
        if not isinstance(result, bool):
            raise EvaluationError(f"the condition gave {type(result).__name__}, not a boolean")
        return result

    def _context(self, values: Values) -> cel.Context:
        # A resolver converts only the fields the evaluation reaches: the engine converts
        # every value it is handed (~100 us for a whole record against ~1 us a field),
        # and a field behind a decided && or || is neither computed nor converted.
        context = cel.Context()
        context.set_variable_resolver(lambda name: _absent_as_none(values[name]))
        return context

    def _check_boolean(self) -> None:
        """A condition that yields a number or a string on a full record is a mistake."""
        try:
            result = self.program.execute(sample())
        except Exception:  # sample values may divide by zero etc.: not a definition error
            return
        if not isinstance(result, bool):
            raise ExpressionError(
                f"the condition gives a {type(result).__name__}, not true/false; "
                "compare it, e.g. `orders > 2`"
            )


def _absent_as_none(value: Any) -> Any:
    return None if value is ERROR else value  # None: the engine's "no such variable"


def _located(message: str) -> ExpressionError:
    match = _LOCATION.search(message)
    if match is None:
        return ExpressionError(message.split("\n", 1)[0])
    line, column, reason = match.groups()
    # The engine counts columns from 0 on some errors and 1 on others; keep its number.
    return ExpressionError(reason.strip(), int(line), max(1, int(column)))


def _unknown(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "; see the field list in README"
    return f"unknown field {name!r}{hint}"


def _position(source: str, name: str) -> tuple[int, int]:
    match = re.search(rf"\b{re.escape(name)}\b", source)
    if match is None:
        return 1, 1
    before = source[: match.start()]
    return before.count("\n") + 1, match.start() - (before.rfind("\n") + 1) + 1
