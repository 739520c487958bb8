"""The segments file: RFM on or off and custom segments, checked whole at start-up.

YAML, or JSON (which PyYAML reads as YAML)::

    rfm: true                      # the eleven RFM segments (default: true)
    segments:
      - name: high_value_at_risk   # [a-z][a-z0-9_]*, unique; used in topics and URLs
        description: spends, but the churn model is worried
        when: churn_risk > 0.7 && revenue_30d > 200.0
      - name: shoe_lovers
        when: '"shoes" in top_categories'

A definition that cannot work stops every role at start-up, before it consumes anything,
with the file, the line and the reason: ``segments.yaml:7: segment 'vip': line 1, column
12: unknown field 'revenu_30d'; did you mean 'revenue_30d'?``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdpulse.segments.compiler import Values
from cdpulse.segments.expressions import Condition, ExpressionError
from cdpulse.segments.rfm import SEGMENTS as RFM_SEGMENTS

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SEGMENT_KEYS = frozenset({"name", "description", "when"})


class DefinitionError(ValueError):
    """A segments file that cannot be used; the message names file, line and fix."""


@dataclass(frozen=True, slots=True)
class SegmentDefinition:
    """A custom segment: a name and the condition its members satisfy."""

    name: str
    condition: Condition
    description: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class SegmentBook:
    """Every segment a worker evaluates.

    ``names`` is every segment id, the RFM ones (when on) first; ``custom_names`` the
    custom ones alone. ``checks`` pairs each custom segment's name with the quickest
    way to decide it on modelled values (``compiler.Values.modelled``): its compiled
    closure, else ``Condition.decide``; True or False decide, anything else cannot.
    All three are derived once, here: every changed customer's decision reads them.
    """

    segments: tuple[SegmentDefinition, ...] = ()
    rfm: bool = True
    # The raw ``experiments`` list, checked by ``cdpulse.experiments.definitions``.
    experiments: tuple[Lined, ...] = ()
    names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    custom_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    checks: tuple[tuple[str, Callable[[Values], Any]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        custom = tuple(s.name for s in self.segments)
        rfm = tuple(s.id for s in RFM_SEGMENTS) if self.rfm else ()
        checks = tuple((s.name, s.condition.closure or s.condition.decide) for s in self.segments)
        object.__setattr__(self, "custom_names", custom)  # frozen: set once, here
        object.__setattr__(self, "names", rfm + custom)
        object.__setattr__(self, "checks", checks)


class Lined(dict[str, Any]):
    """A mapping from the file that remembers the line of itself and of each value."""

    line: int = 0
    lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Lined:  # type: ignore[override]
        mapping = Lined({str(k): v for k, v in super().construct_mapping(node, deep=True).items()})
        mapping.line = node.start_mark.line + 1
        mapping.lines = {}
        for key_node, value_node in node.value:
            # A block scalar (`when: |`) starts on the line after its indicator.
            block = isinstance(value_node, yaml.ScalarNode) and value_node.style in ("|", ">")
            mapping.lines[str(key_node.value)] = value_node.start_mark.line + 1 + block
        return mapping


_Loader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _Loader.construct_mapping,
)


def parse(text: str, origin: str = "<segments>") -> SegmentBook:
    """The book of a segments file's text; DefinitionError on the first problem."""
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        raise DefinitionError(f"{where}: not valid YAML or JSON: {exc}") from None
    if document is None:
        document = Lined()
        document.lines = {}
    if not isinstance(document, Lined):
        raise DefinitionError(f"{origin}:1: the file must be a mapping with 'segments:'")
    unknown = set(document) - {"rfm", "segments", "experiments"}
    if unknown:
        raise DefinitionError(
            f"{origin}:{document.lines[sorted(unknown)[0]]}: unknown key "
            f"{sorted(unknown)[0]!r}; the keys are rfm, segments and experiments"
        )
    rfm = document.get("rfm", True)
    if not isinstance(rfm, bool):
        raise DefinitionError(f"{origin}:{document.lines['rfm']}: rfm must be true or false")
    raw = _items(document, "segments", origin)
    rfm_ids = {s.id for s in RFM_SEGMENTS}
    taken = set(rfm_ids) if rfm else set()
    segments = []
    for item in raw:
        definition = _segment(item, origin)
        if definition.name in taken:
            why = (
                "an RFM segment has that id"
                if rfm and definition.name in rfm_ids
                else ("it is defined twice")
            )
            raise DefinitionError(
                f"{origin}:{item.line}: segment {definition.name!r}: {why}; pick another name"
            )
        taken.add(definition.name)
        segments.append(definition)
    return SegmentBook(tuple(segments), rfm, tuple(_items(document, "experiments", origin)))


def load(path: str | Path) -> SegmentBook:
    """The book of the segments file at ``path``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise DefinitionError(
            f"{file}: cannot read the segments file ({exc.strerror}); "
            "fix CDPULSE_SEGMENTS_FILE or leave it empty for RFM segments only"
        ) from None
    return parse(text, str(file))


def _items(document: Lined, key: str, origin: str) -> list[Lined]:
    raw = document.get(key) or []
    if not isinstance(raw, list) or not all(isinstance(i, Lined) for i in raw):
        raise DefinitionError(
            f"{origin}:{document.lines.get(key, 1)}: {key} must be a list of mappings"
        )
    return raw


def _segment(item: Lined, origin: str) -> SegmentDefinition:
    name = item.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise DefinitionError(
            f"{origin}:{item.line}: segment name {name!r} must match [a-z][a-z0-9_]* "
            "(at most 63 chars), e.g. high_value_at_risk"
        )
    extra = set(item) - SEGMENT_KEYS
    if extra:
        raise DefinitionError(
            f"{origin}:{item.lines[sorted(extra)[0]]}: segment {name!r}: unknown key "
            f"{sorted(extra)[0]!r}; the keys are name, description and when"
        )
    source = item.get("when")
    if not isinstance(source, str):
        raise DefinitionError(
            f"{origin}:{item.line}: segment {name!r}: 'when' must be a CEL condition "
            "as a string, e.g. when: orders > 2"
        )
    try:
        condition = Condition.compile(source)
    except ExpressionError as exc:
        line = item.lines["when"] + exc.line - 1
        raise DefinitionError(
            f"{origin}:{line}: segment {name!r}: column {exc.column}: {exc.reason}"
        ) from None
    return SegmentDefinition(name, condition, str(item.get("description", "")), item.line)


def load_book(path: str) -> SegmentBook:
    """The book of ``CDPULSE_SEGMENTS_FILE``: RFM segments only when it is empty."""
    return load(path) if path else SegmentBook()
