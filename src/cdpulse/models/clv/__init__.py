"""Lifetime value: BG/NBD purchases times Gamma-Gamma spend, refitted on every summary."""

from cdpulse.models.clv.bgnbd import BGNBD, BGNBDParams
from cdpulse.models.clv.fit import ClvFitError
from cdpulse.models.clv.gamma_gamma import GammaGamma, GammaGammaParams
from cdpulse.models.clv.model import (
    ClvPrediction,
    CustomerSummary,
    LifetimeValue,
    summary_from_profile,
)

__all__ = [
    "BGNBD",
    "BGNBDParams",
    "ClvFitError",
    "ClvPrediction",
    "CustomerSummary",
    "GammaGamma",
    "GammaGammaParams",
    "LifetimeValue",
    "summary_from_profile",
]
