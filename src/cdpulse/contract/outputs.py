"""Documents cdpulse publishes for downstream services (schemas in ``schemas/``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RecommendedItem(BaseModel):
    """One recommended product."""

    model_config = ConfigDict(frozen=True)

    product_id: str
    score: float = Field(description="Higher is better; comparable within one list.")
    reason: str = Field(description='Why, in plain words: "bought together with P-17".')


class RecommendationList(BaseModel):
    """Published to ``cdp.recommendations`` on product views, cart adds and orders."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    items: list[RecommendedItem]
    model_version: str
    caused_by: str | None = Field(description="event_id of the event that caused the list.")
    generated_at: datetime


class SegmentTransition(BaseModel):
    """Published to ``cdp.segments`` when a customer enters or leaves a segment."""

    model_config = ConfigDict(frozen=True)

    transition_id: str = Field(
        description="customer:segment:generation; the same change always has the same id."
    )
    customer_id: str
    segment: str = Field(description="An RFM segment id (at_risk, ...) or a custom segment.")
    change: Literal["entered", "left"]
    at: datetime = Field(description="Event time of the profile change that caused it.")
    generation: int = Field(ge=1, description="Odd: entered; even: left.")
