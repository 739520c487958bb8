"""The document published to ``cdp.triggers`` for each firing (schema in ``schemas/``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from cdpulse.contract.outputs import RecommendedItem


class ChosenOffer(BaseModel):
    """The offer the bandit chose, with what off-line policy evaluation needs."""

    model_config = ConfigDict(frozen=True)

    offer_id: str
    propensity: float = Field(
        gt=0, le=1, description="Probability the policy had of choosing this offer."
    )
    policy: str = Field(description='The policy that chose it: "epsilon-greedy LinUCB, e=0.1".')
    features: dict[str, float] = Field(description="The context the offer was chosen in.")


class TriggerMessage(BaseModel):
    """One firing of a trigger rule for one customer and one situation."""

    model_config = ConfigDict(frozen=True)

    trigger_id: str = Field(
        description="rule:customer:situation; the same situation always has the same id."
    )
    rule: str
    kind: str
    customer_id: str
    situation: str = Field(description="What fired: cart-opening event id, session, order...")
    at: datetime = Field(description="Event time of the situation.")
    reasons: list[str]
    products: list[str] = Field(description="The products the situation is about.")
    recommended: list[RecommendedItem]
    offer: ChosenOffer | None
    deliver_at: datetime | None = Field(
        None,
        description="When to send (UTC): the next start, at or after the situation's time, "
        "of the customer's best send window in their own UTC offset; null: send now (the "
        "rule's deliver: now, or no window known yet).",
    )
