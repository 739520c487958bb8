"""What an offer policy hands a trigger: the chosen offer and the probability it had.

Triggers ask a ``Chooser`` (a policy bound to one profile's features) for an offer; the
bandits in ``offers.bandit`` make them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class OfferChoice:
    """The offer a policy chose, the probability it had of choosing it, and its context."""

    offer: str
    propensity: float
    features: dict[str, float] = field(default_factory=dict)


# (rule name, its offers, trigger id) -> the choice, or None for no offer: a bandit bound
# to one profile's features (``OfferPolicy.chooser``).
Chooser = Callable[[str, list[str], str], OfferChoice | None]
