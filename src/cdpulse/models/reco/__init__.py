"""Real-time recommendations: co-visitation, category and trending candidates, ranked online.

The pure core: no Kafka, Redis or Faust. ``Recommender`` learns from item events and
recommends; its state sits behind ``RecoState`` (``MemoryState`` here, a Redis adapter
in the worker); ``cdpulse.models.reco_eval`` replays events to score it.
"""

from cdpulse.models.reco.candidates import Context
from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.ranker import Example
from cdpulse.models.reco.recommender import Recommendation, Recommender
from cdpulse.models.reco.state import MemoryState, RecoState, Shopper

__all__ = [
    "Context",
    "Example",
    "MemoryState",
    "RecoConfig",
    "RecoState",
    "Recommendation",
    "Recommender",
    "Shopper",
]
