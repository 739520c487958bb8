"""A seeded synthetic shop that emits realistic, contract-valid events, and broken ones.

``Shop`` holds the catalogue, the customers and their hidden truth (churn dates,
anonymous ids); ``Shop.events()`` / ``simulate()`` stream the events in time order;
``malformed`` makes raw lines that the contract must reject, each with its reason.
"""

from cdpulse.simulate.catalogue import Catalogue, Product
from cdpulse.simulate.population import Customer
from cdpulse.simulate.shop import DEFAULT_START, CustomerTruth, Shop, simulate
from cdpulse.simulate.storefront import Event

__all__ = [
    "DEFAULT_START",
    "Catalogue",
    "Customer",
    "CustomerTruth",
    "Event",
    "Product",
    "Shop",
    "simulate",
]
