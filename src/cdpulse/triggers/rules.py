"""Trigger rules as configuration: what situation fires, how often, for whom, with what offers.

A rules file (YAML) lists rules by kind; each kind has its own parameters and every rule
shares the delivery policy (marketing consent, cooldown, holdout share, offers). Frequency
caps apply across every marketing rule of one customer.

>>> config = TriggerConfig.model_validate(
...     {"rules": [{"name": "cart", "kind": "cart_abandoned", "after_minutes": 45}]}
... )
>>> rule = config.rules[0]
>>> rule.kind, rule.after_minutes, rule.marketing, rule.cooldown_hours
('cart_abandoned', 45.0, True, 24.0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from cdpulse.contract.events import custom_name_problem
from cdpulse.monitors.health import GateSpec
from cdpulse.segments.expressions import Condition, ExpressionError
from cdpulse.segments.fields import FIELDS

HOUR = 3_600_000
MINUTE = 60_000


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    marketing: bool = Field(
        True, description="A marketing message: only for customers with marketing consent."
    )
    cooldown_hours: float = Field(
        24.0, ge=0, description="Event time after a firing before this rule fires again."
    )
    holdout: float = Field(
        0.0, ge=0, lt=1, description="Share of firings that receive nothing (uplift control)."
    )
    offers: list[str] = Field(
        default_factory=list, description="Offers the bandit chooses from; none: no offer."
    )
    attribution_days: float = Field(
        7.0, gt=0, description="An order or redemption this soon after a firing counts for it."
    )
    gated_by: list[str] = Field(
        default_factory=list,
        description="Models (under gates:) whose broken inputs suppress this rule's firings.",
    )
    deliver: Literal["now", "best_window"] | None = Field(
        None,
        description="best_window: firings carry deliver_at, the next start of the "
        "customer's best send window (null while the profile has none); now: deliver_at "
        "is always null, send at once. Unset: best_window for marketing rules (a campaign "
        "can wait for the hour the customer reads), now for the others (service messages "
        "should not).",
    )

    @property
    def at_best_window(self) -> bool:
        """Whether firings carry the send window's ``deliver_at`` (``deliver``)."""
        return self.deliver == "best_window" or (self.deliver is None and self.marketing)

    @property
    def cooldown(self) -> int:
        return int(self.cooldown_hours * HOUR)

    @property
    def attribution(self) -> int:
        return int(self.attribution_days * 24 * HOUR)


R = TypeVar("R", bound=_Rule)


class CartAbandoned(_Rule):
    """An open cart with no checkout or order for ``after_minutes`` of event time."""

    kind: Literal["cart_abandoned"]
    after_minutes: float = Field(30.0, gt=0)

    @property
    def after(self) -> int:
        return int(self.after_minutes * MINUTE)


OnDegraded = Literal["suppress", "hold", "fallback"]


class ChurnRisk(_Rule):
    """The churn risk crossing ``threshold`` upward.

    Gated by ``churn`` (the default), it also reads the health of the model that computed
    the score (``models/health.py``): while that snapshot is degraded, ``on_degraded``
    says what its crossings do (README: Triggers, Gating).
    """

    kind: Literal["churn_risk"]
    threshold: float = Field(0.7, gt=0, lt=1)
    gated_by: list[str] = Field(
        default_factory=lambda: ["churn"],
        description="A churn score computed from broken inputs fires nothing; with churn "
        "here, a score from a degraded model is handled as on_degraded says.",
    )
    on_degraded: OnDegraded = Field(
        "hold",
        description="A crossing scored by a degraded churn model (its live AUC below the "
        "floor, or an input drifted): suppress (dropped; only a new crossing fires), hold "
        "(nothing sent; the customer's next score decides again, and fires once a model "
        "not degraded scores them at or above the threshold) or fallback (the fallback "
        "condition decides instead of the score).",
    )
    fallback: str = Field(
        "",
        description="With on_degraded: fallback, a CEL condition over the profile's fields "
        "(those of segments: recency_days > 30 && orders >= 2) read at each score while "
        "the model is degraded; its turning true is the situation.",
    )
    _fallback: Condition | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compiled(self) -> ChurnRisk:
        has = bool(self.fallback.strip())
        if (self.on_degraded == "fallback") != has:
            raise ValueError(
                f"rule {self.name!r}: on_degraded: fallback and a fallback condition go "
                "together; set both, or neither"
            )
        if has:
            try:
                self._fallback = Condition.compile(self.fallback, list(FIELDS))
            except ExpressionError as exc:
                raise ValueError(f"rule {self.name!r}, fallback: {exc}") from None
        return self

    @property
    def condition(self) -> Condition | None:
        """The compiled fallback (None without one)."""
        return self._fallback

    @property
    def model_gated(self) -> bool:
        """Whether the health of the churn model gates this rule's situations."""
        return "churn" in self.gated_by


class HighIntent(_Rule):
    """``views`` or more views of one product within one session."""

    kind: Literal["high_intent"]
    views: int = Field(3, ge=2)


class WinBack(_Rule):
    """The customer entered ``segment`` (fed by the segment engine's transitions)."""

    kind: Literal["win_back"]
    segment: str = "at_risk"  # the segment name on cdp.segments (RFM slugs: README)


class CrossSell(_Rule):
    """An order was completed: suggest what goes with it."""

    kind: Literal["cross_sell"]


class CustomEventRule(_Rule):
    """A custom event named ``event`` (the tracking plan's own: ``wishlist_added``), when
    ``when`` holds: a CEL condition over the profile's fields, the event applied (those
    of segments: ``orders``, ``custom.wishlist_added_7d``…) and its properties as
    ``event`` (``event.price > 100.0``). Each such event is a situation of its own."""

    kind: Literal["custom_event"]
    event: str
    when: str = ""
    cooldown_hours: float = Field(
        0.0, ge=0, description="Event time after a firing before this rule fires again."
    )
    _condition: Condition | None = PrivateAttr(default=None)

    @field_validator("event")
    @classmethod
    def _a_custom_name(cls, name: str) -> str:
        problem = custom_name_problem(name)
        if problem is not None:
            raise ValueError(f"event {name!r} is no custom event name: it {problem}")
        return name

    @model_validator(mode="after")
    def _compiled(self) -> CustomEventRule:
        if self.when.strip():
            try:
                self._condition = Condition.compile(self.when, [*FIELDS, "event"])
            except ExpressionError as exc:
                raise ValueError(f"rule {self.name!r}, when: {exc}") from None
        return self

    @property
    def condition(self) -> Condition | None:
        """The compiled ``when`` (None: every event of the name fires)."""
        return self._condition


TriggerRule = Annotated[
    CartAbandoned | ChurnRisk | HighIntent | WinBack | CrossSell | CustomEventRule,
    Field(discriminator="kind"),
]


class Caps(BaseModel):
    """Frequency caps across every marketing rule of one customer, in event time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_day: int = Field(3, ge=1, description="Marketing firings per customer per 24 hours.")
    per_week: int = Field(7, ge=1, description="Marketing firings per customer per 7 days.")


class TriggerConfig(BaseModel):
    """Every rule and the caps: the content of a rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    caps: Caps = Caps()
    rules: list[TriggerRule] = Field(default_factory=list)
    gates: dict[str, GateSpec] = Field(
        default_factory=lambda: {"churn": GateSpec()},
        description="Per model, the inputs whose health gates the rules gated by it.",
    )

    @model_validator(mode="after")
    def _one_rule_per_kind(self) -> TriggerConfig:
        # One customer's watch keeps one state per kind (one cart timer, one session).
        names = [r.name for r in self.rules]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"rule name {name!r} is used twice; give each rule its own name")
        for rule in self.rules:
            for model in rule.gated_by:
                if model not in self.gates:
                    known = ", ".join(sorted(self.gates)) or "none"
                    raise ValueError(
                        f"rule {rule.name!r} is gated by {model!r}, which gates: does not "
                        f"declare (declared: {known}); add it under gates: or drop it"
                    )
        # Custom event rules keep no state in the watch: as many as wanted.
        kinds = [r.kind for r in self.rules if r.kind != "custom_event"]
        for kind in kinds:
            if kinds.count(kind) > 1:
                raise ValueError(
                    f"kind {kind!r} appears in {kinds.count(kind)} rules; keep one rule per kind"
                )
        return self

    def rule(self, kind: type[R]) -> R | None:
        """The rule of ``kind``, if configured."""
        # Looked up for every applied event: found once per configuration and kind (a
        # module-level memo; pydantic's private attributes cost a __getattr__ each).
        key = (id(self), kind)
        try:
            return _BY_KIND[key]  # type: ignore[return-value]
        except KeyError:
            found = next((r for r in self.rules if isinstance(r, kind)), None)
            _BY_KIND[key] = found
            _CONFIGS.append(self)  # keeps ``self`` alive, so its id is never reused
            return found

    def custom(self, name: str) -> list[CustomEventRule]:
        """The custom event rules of the custom event ``name``."""
        key = (id(self), name)
        found = _CUSTOM.get(key)
        if found is None:
            found = _CUSTOM[key] = [
                r for r in self.rules if isinstance(r, CustomEventRule) and r.event == name
            ]
            _CONFIGS.append(self)
        return found

    def named(self, name: str) -> TriggerRule | None:
        # Looked up for every trigger decided and every message composed: the rules by
        # name, built once per configuration as ``of_kind``'s memo (not a scan and a
        # generator each time). Keyed by the rules' own names only: a name asked for by a
        # request adds nothing.
        by_name = _NAMED.get(id(self))
        if by_name is None:
            by_name = _NAMED[id(self)] = {}
            for rule in self.rules:
                by_name.setdefault(rule.name, rule)  # the first of a name, as a scan finds
            _CONFIGS.append(self)
        return by_name.get(name)

    @property
    def longest_memory(self) -> int:
        """How far back caps and cooldowns look: older firings can be forgotten."""
        return max([7 * 24 * HOUR, *(r.cooldown for r in self.rules)])


DEFAULT_RULES = Path(__file__).with_name("default_rules.yaml")
_BY_KIND: dict[tuple[int, type], TriggerRule | None] = {}
_CUSTOM: dict[tuple[int, str], list[CustomEventRule]] = {}
_NAMED: dict[int, dict[str, TriggerRule]] = {}
_CONFIGS: list[TriggerConfig] = []


def load_rules(path: Path | str | None = None) -> TriggerConfig:
    """The rules in ``path`` (YAML), or the built-in defaults when ``path`` is empty."""
    source = Path(path) if path else DEFAULT_RULES
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(
            f"rules file {source}: cannot read it ({exc.strerror}); "
            "set CDPULSE_TRIGGER_RULES to an existing YAML file or leave it empty"
        ) from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"rules file {source}: not valid YAML: {exc}") from exc
    try:
        return TriggerConfig.model_validate(document or {})
    except ValidationError as exc:
        raise ValueError(f"rules file {source}: {exc}") from exc
