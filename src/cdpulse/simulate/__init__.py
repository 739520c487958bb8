"""A seeded synthetic shop that emits realistic, contract-valid events, and broken ones.

``Shop`` holds the catalogue, the customers and their hidden truth (churn dates,
anonymous ids); ``Shop.events()`` / ``simulate()`` stream the events in time order;
``malformed`` makes raw lines that the contract must reject, each with its reason;
``Bias`` injects a measurement bias into one group (a fairness report must catch it).
"""

from cdpulse.simulate.catalogue import Catalogue, Product
from cdpulse.simulate.population import Customer
from cdpulse.simulate.shop import DEFAULT_START, Bias, CustomerTruth, Shop, simulate
from cdpulse.simulate.storefront import Event

__all__ = [
    "DEFAULT_START",
    "Bias",
    "Catalogue",
    "Customer",
    "CustomerTruth",
    "Event",
    "Product",
    "Shop",
    "simulate",
]
