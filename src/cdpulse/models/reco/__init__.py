"""Real-time recommendations: co-visitation, category and trending candidates, ranked online.

The pure core: no Kafka, Redis or Faust. ``Recommender`` learns from item events
(``learn_one``) and recommends (``recommend``, ``similar``, the ``popular`` baseline);
``cdpulse.models.reco_eval`` replays events to score it against popularity.

Per item event a learner does, in memory: read the event's products (``interactions``),
draw the ranker's examples from the state before it (``examples``: a share of events,
a few products each), count the event into co-visitation (``covisitation``) and
popularity (``trending``), update the customer's ``Shopper`` and learn the examples
(``ranker``). Learners may each hold some customers (``shards``); ``Recommender.merge``
serves them as one.
"""

from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.context import Context
from cdpulse.models.reco.ranker import Example, Folded
from cdpulse.models.reco.recommender import Recommendation, Recommender
from cdpulse.models.reco.shards import ServedState, shard_of
from cdpulse.models.reco.state import MemoryState, RecoState, Shopper

__all__ = [
    "Context",
    "Example",
    "Folded",
    "MemoryState",
    "RecoConfig",
    "RecoState",
    "Recommendation",
    "Recommender",
    "ServedState",
    "Shopper",
    "shard_of",
]
