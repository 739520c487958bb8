"""Deterministic assignment: the same experiment and customer give the same variant, always.

The variant is read off SHA-256 of ``experiment NUL customer``: no state to store or
lose, identical in every worker and language, and independent across experiments
(a customer's arm in one test says nothing about its arm in another).

>>> variant("checkout_button", "C-1", (("control", 1.0), ("green", 1.0)))
'green'
>>> variant("checkout_button", "C-1", (("control", 1.0), ("green", 1.0)))
'green'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def unit(experiment: str, customer_id: str) -> float:
    """A uniform number in [0, 1) fixed by the experiment and the customer."""
    digest = hashlib.sha256(f"{experiment}\0{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def variant(experiment: str, customer_id: str, weights: Sequence[tuple[str, float]]) -> str:
    """The variant of ``customer_id``: variants take shares of [0, 1) by weight, in order."""
    total = sum(w for _, w in weights)
    point = unit(experiment, customer_id) * total
    upto = 0.0
    for name, weight in weights:
        upto += weight
        if point < upto:
            return name
    return weights[-1][0]  # point == total only through rounding
