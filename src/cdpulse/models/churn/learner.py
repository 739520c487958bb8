"""The churn learner: test-then-train on labelled examples, in training-topic order.

One learner runs per model (the single partition of the training topic). After each
batch it publishes a snapshot that carries the model, its quality, its health (judged
then from that quality and the drift of the inputs it learned: ``models/health.py``)
and the last offset learned; on a restart it resumes from the newest snapshot and skips
re-delivered examples, so the model is the same as if it had never stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdpulse.models.churn.features import FEATURE_NAMES
from cdpulse.models.churn.labels import Example
from cdpulse.models.churn.model import ChurnModel, Snapshot
from cdpulse.models.drift import DriftMonitor
from cdpulse.models.health import HealthPolicy, assess
from cdpulse.models.quality import ModelQuality


@dataclass
class LearnResult:
    learned: int
    skipped: int
    drifts: int
    # Each example learned as the drift monitor reads it: (offset, the event time its
    # label was decided, its features and the score the model gave it before learning).
    scored: list[tuple[int, int, list[float]]] = field(default_factory=list)


class ChurnLearner:
    """Learns from examples and produces versioned snapshots."""

    def __init__(self, snapshot: Snapshot, policy: HealthPolicy | None = None) -> None:
        self.model = snapshot.model
        self.quality: ModelQuality = snapshot.quality
        self.version = snapshot.version
        self.offset = snapshot.offset
        self.policy = policy or HealthPolicy()
        # A snapshot from before health was assessed: its inputs are counted from here on.
        saved = snapshot.inputs
        self.inputs = (
            DriftMonitor(FEATURE_NAMES) if saved is None else DriftMonitor.from_bytes(saved)
        )

    @classmethod
    def fresh(cls, kind: str = "logistic", policy: HealthPolicy | None = None) -> ChurnLearner:
        return cls(Snapshot(0, ChurnModel.create(kind), ModelQuality(), -1), policy)

    def learn(self, examples: list[tuple[int, Example]]) -> LearnResult:
        """Learn (offset, example) pairs in order; offsets at or below the last are skipped."""
        learned = skipped = drifts = 0
        scored = []
        for offset, example in examples:
            if offset <= self.offset:
                skipped += 1
                continue
            x = dict(zip(FEATURE_NAMES, example.features, strict=True))
            p = self.model.predict_proba(x)
            drifts += self.quality.update(example.label, p)
            if self.model.permutation is not None:  # a model without weights (a forest)
                self.model.permutation.observe(x, example.label, self.model.predict_proba)
            self.model.learn_one(x, example.label)
            self._covers(example)
            self.offset = offset
            learned += 1
            scored.append((offset, example.label_at, [*example.features, p]))
        # Bucketed by the day the label was decided, as the drift reports are (app/drift.py).
        self.inputs.observe((at, values) for _, at, values in scored)
        return LearnResult(learned, skipped, drifts, scored)

    def _covers(self, example: Example) -> None:
        """Widen the event time the model's training data covers to ``example``'s."""
        span = self.model.event_times
        first, last = example.snapshot_at, example.label_at
        if span is not None:
            first, last = min(span[0], first), max(span[1], last)
        self.model.event_times = (first, last)

    def snapshot(self) -> Snapshot:
        """A new version of the model to publish, with its health as of what it learned."""
        self.version += 1
        policy = self.policy
        self.inputs.prune(policy.windows)
        drift = self.inputs.report(policy.windows, policy.psi_threshold)
        health = assess(self.quality, drift, policy)
        inputs = self.inputs.to_bytes()
        return Snapshot(self.version, self.model, self.quality, self.offset, health, inputs)
