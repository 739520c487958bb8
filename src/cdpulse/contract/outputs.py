"""Documents cdpulse publishes for downstream services (schemas in ``schemas/``)."""

from __future__ import annotations

from datetime import datetime

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
