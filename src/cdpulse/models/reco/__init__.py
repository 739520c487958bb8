"""Real-time recommendations: co-visitation, category and trending candidates, ranked online.

The pure core: no Kafka, Redis or Faust. ``Recommender`` learns from item events
(``learn_one``) and recommends (``recommend``, ``similar``, the ``popular`` baseline);
``cdpulse.models.reco_eval`` replays events to score it against popularity.

For the worker, every state change goes through ``RecoState`` (``MemoryState`` here;
``state`` documents the Redis keys it maps to). Per item event, ``observe`` does:

* reads: the customer's ``Shopper`` (``{c}:reco``, next to the profile); for the
  examples, the same reads ``recommend`` makes (a share of events only);
* writes, all commutative increments: ``ZINCRBY`` + ``ZREMRANGEBYRANK`` on
  ``reco:covis:*`` for each new pair, ``ZINCRBY`` on ``reco:trending`` and
  ``reco:trending:{category}``, ``HINCRBYFLOAT`` on ``reco:trending:total``, ``HSET``
  on ``reco:category``; and ``SET {c}:reco``;
* returns the ranker's ``Example``s, which the worker publishes for the one learner;
  the learner's ``Ranker`` (pickle) is the model snapshot every worker scores with.
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
