"""Experiments declared in the segments file, checked at start-up like segments are::

experiments:
  - name: checkout_button        # [a-z][a-z0-9_]*, unique
    variants: {control: 1, green: 1}   # relative weights; the first is the control
    audience: repeat_buyer       # optional: only members of this segment take part
    window_days: 14              # a conversion is an order within this long of exposure
    alpha: 0.05                  # level of the always-valid test and intervals
    mixing_sd: 0.05              # tau: the size of difference the test is tuned for
"""

from __future__ import annotations

from dataclasses import dataclass

from cdpulse.segments.definitions import NAME, DefinitionError, Lined, SegmentBook

KEYS = frozenset({"name", "variants", "audience", "window_days", "alpha", "mixing_sd"})
DAY = 86_400_000


@dataclass(frozen=True, slots=True)
class Experiment:
    """An A/B/n test: variants by weight, who takes part, and what counts as converting."""

    name: str
    variants: tuple[tuple[str, float], ...]
    audience: str | None = None
    window_days: float = 14.0
    alpha: float = 0.05
    mixing_sd: float = 0.05

    @property
    def control(self) -> str:
        return self.variants[0][0]

    @property
    def window_ms(self) -> int:
        return int(self.window_days * DAY)


def experiments(book: SegmentBook, origin: str = "<segments>") -> tuple[Experiment, ...]:
    """The checked experiments of a book; DefinitionError names the line and the fix."""
    out: list[Experiment] = []
    for item in book.experiments:
        experiment = _experiment(item, book, origin)
        if experiment.name in {e.name for e in out}:
            raise DefinitionError(f"{origin}:{item.line}: experiment {experiment.name!r} twice")
        out.append(experiment)
    return tuple(out)


def _experiment(item: Lined, book: SegmentBook, origin: str) -> Experiment:
    name = item.get("name")
    where = f"{origin}:{item.line}: experiment {name!r}"
    if not isinstance(name, str) or not NAME.match(name):
        raise DefinitionError(f"{where}: the name must match [a-z][a-z0-9_]*, e.g. new_checkout")
    extra = sorted(set(item) - KEYS)
    if extra:
        raise DefinitionError(
            f"{origin}:{item.lines[extra[0]]}: experiment {name!r}: unknown key {extra[0]!r}; "
            f"the keys are {', '.join(sorted(KEYS))}"
        )
    variants = item.get("variants")
    if (
        not isinstance(variants, dict)
        or len(variants) < 2
        or not all(isinstance(v, str) and NAME.match(v) for v in variants)
        or not all(isinstance(w, int | float) and w > 0 for w in variants.values())
    ):
        raise DefinitionError(
            f"{where}: variants must map two or more names to positive weights, "
            "e.g. {control: 1, green: 1}"
        )
    audience = item.get("audience")
    if audience is not None and audience not in book.names:
        raise DefinitionError(
            f"{origin}:{item.lines['audience']}: experiment {name!r}: no segment {audience!r}; "
            f"the segments are {', '.join(book.names)}"
        )
    numbers = {}
    for key, default, low, high in (
        ("window_days", 14.0, 0.0, 3650.0),
        ("alpha", 0.05, 0.0, 0.5),
        ("mixing_sd", 0.05, 0.0, 1.0),
    ):
        value = item.get(key, default)
        if not isinstance(value, int | float) or not low < value <= high:
            raise DefinitionError(
                f"{origin}:{item.lines.get(key, item.line)}: experiment {name!r}: "
                f"{key} must be a number in ({low}, {high}], got {value!r}"
            )
        numbers[key] = float(value)
    return Experiment(
        name,
        tuple((str(v), float(w)) for v, w in variants.items()),
        audience,
        **numbers,
    )
