"""The campaign-response model: a River logistic regression learned online, its reasons,
and the learner that feeds it in topic order.

``StandardScaler | LogisticRegression``: the score decomposes exactly into one
contribution per feature (weight times standardised value), and the largest ones
towards a response become the reasons, in words.

>>> from cdpulse.models.campaign.features import vector
>>> learner = CampaignLearner.fresh()
>>> zero = dict.fromkeys(FEATURE_NAMES, 0.0)
>>> pairs = []
>>> for i in range(1000):
...     x = zero | {"past_exposures": 4.0, "past_response_rate": float(i % 2)}
...     pairs.append((i, CampaignExample("C", i, 0, i, i % 2, vector(x))))
>>> learner.learn(pairs).learned
1000
>>> model = learner.snapshot().model
>>> x = zero | {"past_exposures": 4.0, "past_response_rate": 1.0}
>>> model.predict_proba(x) > 0.9, model.reasons(x)[0]
(True, 'clicked 4 of 4 earlier newsletters')
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

from river import linear_model, optim, preprocessing

from cdpulse.models.campaign.features import FEATURE_NAMES, describe
from cdpulse.models.campaign.labels import CampaignExample
from cdpulse.models.quality import ModelQuality


@dataclass
class CampaignModel:
    """An online classifier of responses over ``cdpulse.models.campaign.features``."""

    pipeline: Any
    examples: int = 0

    @classmethod
    def create(cls) -> CampaignModel:
        return cls(
            preprocessing.StandardScaler()
            | linear_model.LogisticRegression(optimizer=optim.SGD(0.02))
        )

    def learn_one(self, x: dict[str, float], y: int) -> None:
        self.pipeline.learn_one(x, bool(y))
        self.examples += 1

    def predict_proba(self, x: dict[str, float]) -> float:
        return float(self.pipeline.predict_proba_one(x).get(True, 0.0))

    def reasons(self, x: dict[str, float], k: int = 3) -> list[str]:
        """The ``k`` largest contributions towards a response, in words (distinct ones:
        the tally's two features share theirs). The words state facts, so they read
        right for a low score too."""
        scaled = self.pipeline["StandardScaler"].transform_one(x)
        weights = self.pipeline["LogisticRegression"].weights
        ranked = sorted(
            ((-weights.get(n, 0.0) * scaled.get(n, 0.0), n) for n in FEATURE_NAMES),
        )
        out: list[str] = []
        for _, name in ranked:
            words = describe(name, x)
            if words not in out:
                out.append(words)
            if len(out) == k:
                break
        return out


@dataclass(frozen=True, slots=True)
class CampaignSnapshot:
    """A published campaign model, what the api scores with, and its learner's state."""

    version: int
    model: CampaignModel
    quality: ModelQuality
    offset: int  # the last topic offset learned: re-delivered examples are skipped

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)


class CampaignLearner:
    """Test-then-train on labelled exposures, in topic order; versioned snapshots."""

    def __init__(self, snapshot: CampaignSnapshot) -> None:
        self.model = snapshot.model
        self.quality = snapshot.quality
        self.version = snapshot.version
        self.offset = snapshot.offset

    @classmethod
    def fresh(cls) -> CampaignLearner:
        return cls(CampaignSnapshot(0, CampaignModel.create(), ModelQuality(), -1))

    def learn(self, examples: list[tuple[int, CampaignExample]]) -> Learned:
        """Learn (offset, example) pairs in order; offsets at or below the last are skipped."""
        learned = Learned()
        for offset, example in examples:
            if offset <= self.offset:
                learned.skipped += 1
                continue
            x = dict(zip(FEATURE_NAMES, example.features, strict=True))
            p = self.model.predict_proba(x)
            self.quality.update(example.label, p)
            self.model.learn_one(x, example.label)
            self.offset = offset
            learned.learned += 1
            learned.predictions.append(p)
        return learned

    def snapshot(self) -> CampaignSnapshot:
        """A new version of the model to publish."""
        self.version += 1
        return CampaignSnapshot(self.version, self.model, self.quality, self.offset)


@dataclass
class Learned:
    """What one ``learn`` did: the score of each example learned, before it was learned."""

    learned: int = 0
    skipped: int = 0
    predictions: list[float] = field(default_factory=list)
