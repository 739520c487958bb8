"""The syntax of CEL's common subset (``segments.compiler``), parsed into nodes.

A strict recursive descent over CEL's grammar that gives up (``OutsideSubset``) on
anything it does not know all of: a source reaching here already compiled in the
engine, so the question is only whether the subset understands every token of it.

A node is a tuple: ``("const", value)``, ``("name", field)``, ``("list", items)``,
``("select", node, key)``, ``("index", node, node)``, ``("has", node, key)``,
``("not", node)``, ``("and", operands)``, ``("or", operands)``, and
``("compare", operator, left, right)`` with the operator one of == != < <= > >= in.

>>> parse('orders >= 2 && "shoes" in top_categories')
('and', (('compare', '>=', ('name', 'orders'), ('const', 2)), \
('compare', 'in', ('const', 'shoes'), ('name', 'top_categories'))))
>>> try:
...     parse("size(top_categories) > 2")
... except OutsideSubset as outside:
...     print(outside)
function size
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

I64_MIN: Final = -(2**63)
I64_MAX: Final = 2**63 - 1
# Deeper than any honest condition; keeps parsing and the closures' recursion bounded.
MAX_DEPTH: Final = 64

Node = tuple[Any, ...]


class OutsideSubset(Exception):
    """The source uses something the subset does not have: the engine runs it."""


def parse(source: str) -> Node:
    """The node of ``source``; OutsideSubset when it is not all in the subset."""
    try:
        return _Parser(source).whole()
    except RecursionError:
        raise OutsideSubset("too deep") from None


_TOKEN = re.compile(
    r"""[ \t\r\n\f]*(?:
      (?P<float>[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)
    | (?P<int>[0-9]+)
    | (?P<string>"[^"\\\r\n]*"|'[^'\\\r\n]*')
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>&&|\|\||==|!=|<=|>=|[<>!()\[\].,-])
    )""",
    re.VERBOSE,
)
_TRAILING_SPACE = re.compile(r"[ \t\r\n\f]*\Z")
# A number glued to a letter, digit or dot is something else (1u, 0x1f, 1.e3); so is
# a string glued after a letter (r"raw", b"bytes").
_GLUED = re.compile(r"[A-Za-z0-9_.]")
_LEADING_ZERO = re.compile(r"0[0-9]")
_RELATIONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})
_RESERVED = frozenset(
    {"in", "as", "break", "const", "continue", "else", "for", "function", "if", "import"}
    | {"let", "loop", "package", "namespace", "return", "var", "void", "while"}
)


def _tokens(source: str) -> list[tuple[str, str]]:
    if '"""' in source or "'''" in source:
        raise OutsideSubset("triple-quoted string")
    out: list[tuple[str, str]] = []
    position = 0
    while not _TRAILING_SPACE.match(source, position):
        match = _TOKEN.match(source, position)
        if match is None:
            raise OutsideSubset(f"column {position + 1}")
        kind = match.lastgroup
        assert kind is not None
        text = match.group(kind)
        position = match.end()
        if kind in ("int", "float"):
            if _LEADING_ZERO.match(text):
                raise OutsideSubset("leading zero")
            if _GLUED.match(source, position):
                raise OutsideSubset("number suffix")
        if kind == "string" and _GLUED.match(source, match.start(kind) - 1):
            raise OutsideSubset("string prefix")  # r"...", b"..."
        out.append((kind, text))
    return out


class _Parser:
    """Recursive descent over CEL's grammar, for the subset only."""

    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.at = 0
        self.depth = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self, text: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end" or (text is not None and token[1] != text):
            raise OutsideSubset(f"expected {text or 'more'}")
        self.at += 1
        return token

    def whole(self) -> Node:
        node = self.expression()
        if self.peek()[0] != "end":
            raise OutsideSubset("trailing tokens")
        return node

    def expression(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise OutsideSubset("too deep")
        node = self.junction("||", "or", self.conjunction)
        self.depth -= 1
        return node

    def junction(self, symbol: str, kind: str, operand: Callable[[], Node]) -> Node:
        # Chains are flattened (a && b && c is one node): deep chains cost no recursion.
        nodes = [operand()]
        while self.peek() == ("op", symbol):
            self.take()
            nodes.append(operand())
        return nodes[0] if len(nodes) == 1 else (kind, tuple(nodes))

    def conjunction(self) -> Node:
        return self.junction("&&", "and", self.relation)

    def relation(self) -> Node:
        node = self.unary()
        chained = 0
        while self.peek()[1] in _RELATIONS and self.peek()[0] in ("op", "name"):
            chained += 1
            if chained > MAX_DEPTH:
                raise OutsideSubset("too deep")
            operator_ = self.take()[1]
            node = ("compare", operator_, node, self.unary())
        return node

    def unary(self) -> Node:
        kind, text = self.peek()
        if (kind, text) == ("op", "!"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise OutsideSubset("too deep")
            node = ("not", self.unary())
            self.depth -= 1
            return node
        if (kind, text) == ("op", "-"):
            # Only a negative number: the engine's minus on other values has quirks
            # (-true is false) the subset would have to copy.
            self.take()
            operand = self.unary()
            if operand[0] != "const" or type(operand[1]) not in (int, float):
                raise OutsideSubset("minus on a non-number")
            return ("const", _int64(-operand[1]) if type(operand[1]) is int else -operand[1])
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while True:
            kind, text = self.peek()
            if (kind, text) == ("op", "."):
                self.take()
                name_kind, name = self.take()
                if name_kind != "name" or self.peek() == ("op", "("):
                    raise OutsideSubset("method call")
                node = ("select", node, name)
            elif (kind, text) == ("op", "["):
                self.take()
                node = ("index", node, self.expression())
                self.take("]")
            else:
                return node

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "int":
            return ("const", _int64(int(text)))
        if kind == "float":
            return ("const", float(text))
        if kind == "string":
            return ("const", text[1:-1])
        if (kind, text) == ("op", "("):
            node = self.expression()
            self.take(")")
            return node
        if (kind, text) == ("op", "["):
            items: list[Node] = []
            if self.peek() != ("op", "]"):
                items.append(self.expression())
                while self.peek() == ("op", ","):
                    self.take()
                    items.append(self.expression())
            self.take("]")
            return ("list", tuple(items))
        if kind != "name" or text in _RESERVED:
            raise OutsideSubset(f"unexpected {text!r}")
        if text in ("true", "false", "null"):
            return ("const", {"true": True, "false": False, "null": None}[text])
        if self.peek() == ("op", "("):
            if text != "has":
                raise OutsideSubset(f"function {text}")
            self.take()
            argument = self.expression()
            self.take(")")
            if argument[0] != "select":
                raise OutsideSubset("has() of a non-selection")
            return ("has", argument[1], argument[2])
        return ("name", text)


def _int64(value: int) -> int:
    if not I64_MIN <= value <= I64_MAX:
        raise OutsideSubset("int beyond 64 bits")
    return value
