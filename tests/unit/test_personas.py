"""Personas: features, examples decided at the watermark, stable ids, words, the read,
and the evaluation's figures."""

from __future__ import annotations

import asyncio
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdpulse.contract.partitions import partition_of
from cdpulse.models.personas import (
    FEATURES,
    FloatArray,
    PersonaModel,
    describe,
    persona_features,
)
from cdpulse.models.personas_eval import evaluate
from cdpulse.models.personas_labels import PersonaExample, PersonaLabeler, read_record
from cdpulse.models.personas_learner import PersonaLearner, persona_of, quality, silhouette
from cdpulse.models.reco_stream import Forget
from cdpulse.pipeline.persona_replay import replay_personas
from cdpulse.profile.model import Profile
from cdpulse.profile.windows import DAY
from cdpulse.settings import Settings
from cdpulse.simulate.shop import Shop


def point(**values: float) -> dict[str, float]:
    return {**dict.fromkeys(FEATURES, 0.0), **values}


def test_features_read_the_days_up_to_the_day_only_logged() -> None:
    days = {
        0: [4, 1, 30.0],
        3 * DAY: [2, 0, 0.0],
        5 * DAY: [6, 2, 50.0],
        6 * DAY: [9, 9, 900.0],  # after the day read
        -61 * DAY: [1, 1, 1000.0],  # before the window
    }
    x = persona_features(Profile(id="C-1", churn_days=days), 5 * DAY)
    assert x["orders"] == np.log1p(3) and x["net_revenue"] == np.log1p(80.0)
    assert x["average_order_value"] == np.log1p(80.0 / 3)
    assert x["active_days"] == np.log1p(3) and x["events_per_day"] == np.log1p(12 / 3)
    assert x["days_between_orders"] == np.log1p(5.0)


def test_examples_are_decided_at_the_watermark_oldest_day_first_once() -> None:
    labeler = PersonaLabeler(lateness=10)
    p = Profile(id="C-1", churn_days={0: [1, 1, 5.0], DAY: [1, 0, 0.0], 2 * DAY: [3, 2, 9.0]})
    p.last_order_at = 2 * DAY + 5
    assert labeler.decide(p, DAY + 9) == ([], DAY + 10)
    first, due = labeler.decide(p, 3 * DAY)
    assert [(e.day, e.label_at) for e in first] == [(0, DAY + 10)] and due == 3 * DAY + 10
    assert first[0].features == [persona_features(p, 0)[f] for f in FEATURES]
    second, due = labeler.decide(p, 9 * DAY)
    assert [e.day for e in second] == [2 * DAY] and due is None
    assert labeler.decide(p, 99 * DAY) == ([], None)  # each day once


def test_a_day_decided_after_an_analytics_refusal_is_not_learned() -> None:
    p = Profile(id="C-1", churn_days={0: [1, 1, 5.0], 4 * DAY: [1, 1, 5.0]})
    p.last_order_at = 4 * DAY
    p.consent = {"analytics": (3 * DAY, False)}
    examples, due = PersonaLabeler(lateness=0).decide(p, 9 * DAY)
    assert [e.day for e in examples] == [0] and due is None


def test_persona_ids_stay_with_their_groups_across_checkpoints() -> None:
    rng = np.random.default_rng(1)
    defining = {
        "loyal": {"orders": 3.0, "net_revenue": 6.0},
        "browser": {"events_per_day": 4.0},
        "seldom": {"days_between_orders": 4.0},
    }

    def noisy(name: str) -> dict[str, float]:
        return point(**{f: v + rng.normal(0, 0.05) for f, v in defining[name].items()})

    model = PersonaModel(k=3, warmup=30, every=40)
    for _ in range(40):
        for name in defining:
            model.learn_one(noisy(name))
    first = model.view()
    assert first is not None
    ids = {name: first.assign(point(**values)) for name, values in defining.items()}
    assert len(set(ids.values())) == 3
    for _ in range(40):  # more of the same, in another order
        for name in reversed(list(defining)):
            model.learn_one(noisy(name))
    second = model.view()
    assert second is not None and second.version > first.version
    assert {name: second.assign(point(**v)) for name, v in defining.items()} == ids
    words = {p.id: p.description for p in second.personas}
    assert "browses a lot per visit" in words[ids["browser"]]
    assert "orders seldom" in words[ids["seldom"]]
    assert model.stability == 1.0


def test_what_is_published_does_not_depend_on_how_often_it_was() -> None:
    rng = np.random.default_rng(3)
    points = [point(orders=float(rng.integers(0, 5)), active_days=rng.normal()) for _ in range(90)]
    quiet, chatty = PersonaModel(k=3, warmup=10, every=20), PersonaModel(k=3, warmup=10, every=20)
    for x in points:
        quiet.learn_one(x)
        chatty.learn_one(x)
        chatty.view()
    assert quiet.view() == chatty.view()


def test_the_learner_skips_re_delivered_offsets() -> None:
    learner = PersonaLearner.fresh(k=2, warmup=2, every=5)
    example = PersonaExample("C", 0, 0, [1.0] * len(FEATURES))
    assert learner.learn([(0, example), (1, example)]) == 2
    assert learner.learn([(1, example), (2, example)]) == 1
    assert learner.snapshot().offset == 2


def test_the_read_persona_needs_consent_a_model_and_an_order() -> None:
    learner = PersonaLearner.fresh(k=2, warmup=4, every=4)
    for i in range(8):
        x = point(orders=float(i % 2) * 3)
        learner.learn([(i, PersonaExample("C", 0, 0, [x[f] for f in FEATURES]))])
    state = learner.snapshot()
    buyer = Profile(id="C-1", churn_days={0: [1, 1, 10.0]})
    found = persona_of(buyer, state)
    assert found is not None and found["model_version"] == 1
    assert state.view is not None and found["id"] in {p.id for p in state.view.personas}
    assert all(isinstance(r, str) for r in found["reasons"])
    assert persona_of(buyer, None) is None
    assert persona_of(Profile(id="C-2", churn_days={0: [3, 0, 0.0]}), state) is None
    buyer.consent = {"personalization": (0, False)}
    assert persona_of(buyer, state) is None


def test_a_centre_near_the_mean_says_so() -> None:
    assert describe([0.1] * len(FEATURES)) == "close to the average customer"


def test_silhouette_of_two_separate_blobs_is_near_one_and_of_one_label_zero() -> None:
    z = np.array([[0.0, 0.0], [0.0, 0.1], [10.0, 10.0], [10.0, 10.1]])
    assert silhouette(z, [0, 0, 1, 1]) > 0.95
    assert silhouette(z, [0, 0, 0, 0]) == 0.0


def silhouette_by_definition(z: Any, labels: list[int]) -> float:
    """The mean silhouette point by point, as its definition reads: the oracle."""
    if len(set(labels)) < 2:
        return 0.0
    scores = []
    for i, point in enumerate(z):
        distance = [float(np.sqrt(((point - other) ** 2).sum())) for other in z]
        own = [distance[j] for j in range(len(z)) if labels[j] == labels[i] and j != i]
        if not own:
            scores.append(0.0)
            continue
        a = sum(own) / len(own)
        b = min(
            float(np.mean([distance[j] for j in range(len(z)) if labels[j] == other]))
            for other in set(labels) - {labels[i]}
        )
        scores.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    return float(np.mean(scores))


@given(
    st.integers(min_value=2, max_value=40).flatmap(
        lambda n: st.tuples(
            st.lists(st.lists(st.integers(-3, 3), min_size=2, max_size=2), min_size=n, max_size=n),
            st.lists(st.integers(0, 4), min_size=n, max_size=n),
        )
    )
)
def test_silhouette_is_its_definition(case: tuple[list[list[int]], list[int]]) -> None:
    # Integer points repeat often: zero distances, personas of one point, ties.
    points, labels = case
    z = np.array(points, dtype=float)
    assert silhouette(z, labels) == pytest.approx(silhouette_by_definition(z, labels), abs=1e-9)


@given(
    st.lists(
        st.lists(st.integers(-4, 4), min_size=len(FEATURES), max_size=len(FEATURES)),
        min_size=20,
        max_size=60,
    ),
    st.lists(
        st.lists(st.integers(-4, 4), min_size=len(FEATURES), max_size=len(FEATURES)),
        min_size=0,
        max_size=30,
    ),
)
def test_assigning_many_points_at_once_assigns_each_as_one(
    learned: list[list[int]], asked: list[list[int]]
) -> None:
    # Integer features repeat often: points at equal distances from two centres (ties).
    model = PersonaModel(k=3, warmup=10, every=5)
    for row in learned:
        model.learn_one(dict(zip(FEATURES, map(float, row), strict=True)))
    view = model.view()
    assert view is not None
    points = [np.array(row, dtype=float) for row in asked] + list(model.recent)
    one_by_one = [view.assign(dict(zip(FEATURES, p.tolist(), strict=True))) for p in points]
    assert view.assign_all(points) == one_by_one
    for z, p in zip(view.standardise_all(points), points, strict=True):
        assert z.tolist() == view.standardise(dict(zip(FEATURES, p.tolist(), strict=True))).tolist()


class SequentialKMeans:
    """Sequential k-means as the module docstring defines it, in whole numpy arrays (as
    ``PersonaModel`` computed it before its points ran on Python floats): the oracle."""

    def __init__(self, k: int, warmup: int, seed: int = 0) -> None:
        self.k, self.warmup, self.seed = k, warmup, seed
        self.n = 0
        self.mean = np.zeros(len(FEATURES))
        self.m2 = np.zeros(len(FEATURES))
        self.buffer: list[FloatArray] = []
        self.centres: FloatArray | None = None
        self.counts = np.zeros(k, dtype=np.int64)

    def scale(self) -> FloatArray:
        std: FloatArray = np.sqrt(self.m2 / max(self.n - 1, 1))
        return np.where(std > 1e-9, std, 1.0)

    def learn(self, v: FloatArray) -> None:
        self.n += 1
        delta = v - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (v - self.mean)
        if self.centres is None:
            self.buffer.append(v)
            if len(self.buffer) == self.warmup:
                self.seed_centres()
            return
        nearest = int(np.argmin((((self.centres - v) / self.scale()) ** 2).sum(axis=1)))
        self.counts[nearest] += 1
        self.centres[nearest] += (v - self.centres[nearest]) / self.counts[nearest]

    def seed_centres(self) -> None:
        """k-means++: the first centre drawn at random, each next one with a chance
        proportional to its squared distance to the nearest chosen."""
        points, scale = np.array(self.buffer), self.scale()
        rng = np.random.default_rng(self.seed)
        chosen = [int(rng.integers(len(points)))]
        for _ in range(1, self.k):
            d = np.min([(((points - points[c]) / scale) ** 2).sum(axis=1) for c in chosen], axis=0)
            total = d.sum()
            chosen.append(int(rng.choice(len(points), p=d / total)) if total > 0 else len(chosen))
        self.centres = points[chosen].copy()
        d = (((points[:, None, :] - self.centres[None, :, :]) / scale) ** 2).sum(axis=2)
        self.counts = np.bincount(np.argmin(d, axis=1), minlength=self.k)


def bits(values: Any) -> bytes:
    """The numbers' bytes: equal only bit for bit (signed zeros apart, too)."""
    return np.asarray(values, dtype=np.float64).tobytes()


# Small integers repeat: equal points, zero variances, centres at equal distances. Floats
# from 1e-300 to 1e6 apart: sums where the order of the additions shows in the last bits.
FEATURE_VALUE = st.one_of(
    st.integers(-3, 3).map(float), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
)


@given(
    st.integers(min_value=2, max_value=4).flatmap(
        lambda k: st.tuples(st.just(k), st.integers(min_value=k, max_value=12))
    ),
    st.lists(
        st.lists(FEATURE_VALUE, min_size=len(FEATURES), max_size=len(FEATURES)),
        min_size=1,
        max_size=120,
    ),
    st.booleans(),
)
def test_learning_a_point_is_its_definition_bit_for_bit(
    shape: tuple[int, int], points: list[list[float]], one_point_first: bool
) -> None:
    k, warmup = shape
    if one_point_first:  # a warm-up of a single point seeds k equal centres: exact ties
        points = [points[0]] * warmup + points
    model, oracle = PersonaModel(k=k, warmup=warmup, every=7), SequentialKMeans(k, warmup)
    for row in points:
        model.learn_one(dict(zip(FEATURES, row, strict=True)))
        oracle.learn(np.array(row))
        assert model.n == oracle.n
        assert bits(model.mean) == bits(oracle.mean) and bits(model.m2) == bits(oracle.m2)
        assert (model.centres is None) == (oracle.centres is None)
        if model.centres is not None:
            assert bits(model.centres) == bits(oracle.centres)
            assert model.counts == oracle.counts.tolist()


def test_a_near_tie_is_decided_as_numpy_adds_the_squares() -> None:
    # Centre 0's squares add up to 1 in order (each 2**-54 is lost against the 1) but to
    # 1 + 2**-52 smallest first; centre 1's are exactly 1. Which one is nearer depends on
    # the order of the additions: the model's choice must stay numpy's.
    tiny = 2.0**-27
    centres = [[1.0, tiny, tiny, tiny, tiny, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
    model, oracle = PersonaModel(k=2, warmup=2), SequentialKMeans(2, 2)
    model.n = oracle.n = 10  # seen the origin 10 times: the scale is 1
    model.centres, oracle.centres = [list(c) for c in centres], np.array(centres)
    model.counts, oracle.counts = [5, 5], np.array([5, 5])
    model.learn_one(dict.fromkeys(FEATURES, 0.0))
    oracle.learn(np.zeros(len(FEATURES)))
    assert bits(model.centres) == bits(oracle.centres) and model.counts == oracle.counts.tolist()


def test_features_in_order_are_learned_as_their_dict() -> None:
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(60, len(FEATURES))).tolist()
    by_dict, by_list = (
        PersonaModel(k=3, warmup=10, every=20),
        PersonaModel(k=3, warmup=10, every=20),
    )
    for row in rows:
        by_dict.learn_one(dict(zip(FEATURES, row, strict=True)))
        by_list.learn_features(row)
    assert by_list.view() == by_dict.view() and by_list.centres == by_dict.centres
    with pytest.raises(ValueError, match="6 features expected"):
        by_list.learn_features(rows[0][:-1])
    assert by_list.n == len(rows)  # refused before anything was learned


def test_a_pickled_model_keeps_its_arrays_and_learns_on_the_same() -> None:
    """The model pickles its moments and centres as numpy arrays, as published states
    always held them: learners before and after the change read each other's."""
    rng = np.random.default_rng(6)
    model = PersonaModel(k=3, warmup=10, every=15)
    for row in rng.normal(size=(40, len(FEATURES))).tolist():
        model.learn_features(row)
    state = model.__getstate__()
    assert {n: type(state[n]) for n in ("mean", "m2", "centres", "counts")} == dict.fromkeys(
        ("mean", "m2", "centres", "counts"), np.ndarray
    )
    assert state["centres"].shape == (3, len(FEATURES)) and state["counts"].dtype == np.int64
    again = pickle.loads(pickle.dumps(model))
    assert again.counts == model.counts and isinstance(again.counts[0], int)
    for row in rng.normal(size=(40, len(FEATURES))).tolist():
        model.learn_features(row)
        again.learn_features(row)
    assert again.view() == model.view()
    assert (again.mean, again.m2, again.centres) == (model.mean, model.m2, model.centres)


def test_model_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="warmup >= k"):
        PersonaModel(k=5, warmup=3)


def test_evaluate_personas_on_the_replayed_simulated_shop() -> None:
    settings = Settings(persona_warmup=50, persona_checkpoint_examples=100)
    lines = [json.dumps(e).encode() for e in Shop(customers=200, days=45, seed=9).events()]
    replayed = asyncio.run(replay_personas(lines, settings, partition_of))
    assert len(replayed.examples) > 100
    # in the order the worker publishes them
    assert [e.order for e in replayed.examples] == sorted(e.order for e in replayed.examples)
    result = evaluate(replayed.examples, k=5, warmup=50, every=100)
    assert result is not None and sum(result.sizes.values()) == len(replayed.examples)
    assert -1 <= result.silhouette <= 1 and -1 <= result.baseline_silhouette <= 1
    measured = quality(_learned(replayed.examples))
    assert measured is not None and measured.silhouette == result.silhouette
    # Ids carried by matching keep more customers in their persona than two batch runs.
    assert result.stability > result.baseline_stability
    assert len(result.descriptions) == 5 and all(result.descriptions.values())


def _learned(examples: list[PersonaExample]) -> PersonaModel:
    learner = PersonaLearner.fresh(k=5, warmup=50, every=100)
    learner.learn(list(enumerate(examples)))
    return learner.model


def test_segments_read_the_persona_id_and_nothing_while_it_is_unknown() -> None:
    from cdpulse.profile.rules import Rules
    from cdpulse.segments.fields import profile_fields

    learner = PersonaLearner.fresh(k=2, warmup=4, every=4)
    for i in range(8):
        x = point(orders=float(i % 2) * 3)
        learner.learn([(i, PersonaExample("C", 0, 0, [x[f] for f in FEATURES]))])
    state = learner.snapshot()
    buyer = Profile(id="C-1", customer_id="C-1", churn_days={0: [1, 1, 10.0]})
    found = persona_of(buyer, state)
    assert found is not None
    assert profile_fields(buyer, Rules(), personas=state)["persona"] == found["id"]
    assert "persona" not in profile_fields(buyer, Rules())  # no personas yet
    buyer.consent = {"personalization": (0, False)}
    assert "persona" not in profile_fields(buyer, Rules(), personas=state)


def test_each_customer_counts_once_in_the_shares_at_their_newest_point() -> None:
    low, high = point(orders=0.0), point(orders=3.0)
    learner = PersonaLearner.fresh(k=2, warmup=4, every=100)
    rows = [("A", low), ("B", low), ("C", high), ("D", high), ("A", high)]
    learner.learn(
        [(i, PersonaExample(c, 0, 0, [x[f] for f in FEATURES])) for i, (c, x) in enumerate(rows)]
    )
    state = learner.snapshot()
    assert state.view is not None
    low_id, high_id = state.view.assign(low), state.view.assign(high)
    assert state.customer_shares == {low_id: 0.25, high_id: 0.75}  # A is where it is now
    assert state.members == {high_id: ["A", "D", "C"], low_id: ["B"]}  # newest first


def test_a_warm_up_too_short_to_seed_k_personas_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="CDPULSE_PERSONA_WARMUP=3 is below CDPULSE_PERSONA_K=5"):
        Settings(persona_warmup=3, persona_k=5)


def test_evaluate_personas_prints_both_clusterings_and_says_when_too_few(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdpulse.cli.main import main
    from cdpulse.settings import get_settings

    shop = tmp_path / "shop.jsonl"
    events = Shop(customers=80, days=30, seed=4).events()
    shop.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    monkeypatch.setenv("CDPULSE_PERSONA_WARMUP", "30")
    monkeypatch.setenv("CDPULSE_PERSONA_CHECKPOINT_EXAMPLES", "20")
    get_settings.cache_clear()
    try:
        assert main(["evaluate", "personas", "--input", str(shop), "--k", "3"]) == 0
        out = capsys.readouterr().out
        assert "online personas" in out and "batch k-means" in out and "persona 2" in out
        assert main(["evaluate", "personas", "--input", str(shop), "--k", "31"]) == 2
        assert "at most CDPULSE_PERSONA_WARMUP (30)" in capsys.readouterr().err
        monkeypatch.setenv("CDPULSE_PERSONA_WARMUP", "5000")
        get_settings.cache_clear()
        assert main(["evaluate", "personas", "--input", str(shop)]) == 2
        assert "too few orders" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


def test_an_erased_customer_is_forgotten_by_the_learner_and_its_snapshot() -> None:
    """An erasure's Forget on the training topic drops the customer's points from the
    newest ones: no member, share or stored state names them any more."""
    low, high = point(orders=0.0), point(orders=3.0)
    learner = PersonaLearner.fresh(k=2, warmup=4, every=100)
    rows = [("hmac:A", low), ("hmac:B", low), ("hmac:C", high), ("hmac:D", high)]
    records: list[tuple[int, PersonaExample | Forget]] = [
        (i, PersonaExample(c, 0, 0, [x[f] for f in FEATURES])) for i, (c, x) in enumerate(rows)
    ]
    assert learner.learn(records) == 4
    forget = read_record(Forget("hmac:C").to_json())
    assert forget == Forget("hmac:C")
    assert learner.learn([(4, forget), (5, Forget("hmac:nobody"))]) == 1
    state = learner.snapshot()
    assert state.view is not None
    assert state.offset == 5
    assert b"hmac:C" not in state.dumps()
    assert list(state.recent) == ["hmac:A", "hmac:B", "hmac:D"] and len(state.model.recent) == 3
    low_id, high_id = state.view.assign(low), state.view.assign(high)
    assert state.members == {high_id: ["hmac:D"], low_id: ["hmac:B", "hmac:A"]}
    assert state.customer_shares == {low_id: round(2 / 3, 4), high_id: round(1 / 3, 4)}
    assert read_record(records[0][1].to_json()) == records[0][1]  # type: ignore[union-attr]
