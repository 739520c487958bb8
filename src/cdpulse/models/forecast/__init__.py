"""Demand forecasts: daily units and revenue per category and top product, learned online.

``model``: one series' River Holt-Winters model; ``book``: every series, learned from
closed days' KPI counters; ``served``: a forecast as the api serves it, with reasons.
"""

from cdpulse.models.forecast.book import ForecastBook, closed_through, low_watermark, walk
from cdpulse.models.forecast.served import forecast

__all__ = ["ForecastBook", "closed_through", "forecast", "low_watermark", "walk"]
