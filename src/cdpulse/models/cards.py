"""Model cards: what a published model is, what it learned from, and how well it does.

A card is built from a snapshot alone, so the api answers it from what it already
loads. Every figure is measured or read from the model, never invented: where one
cannot be known (a forest's importance before it was measured, a quality no one
tracks), it reads ``None`` and the card says why.

Global importance, per model kind:

* churn and campaign response, logistic: ``|weight| x standard deviation``, the weight
  on the raw feature times the scaler's standard deviation of that feature; since
  River's regression learns on standardised features, that is the size of the learned
  weight itself.
* churn, forest: permutation importance, measured online on every tenth example before
  the forest learned it (``models/churn/permutation.py``): the mean increase in log loss
  when the feature takes an earlier example's value. A forest pickled before it was
  measured has none.
* recommender: the ranker's weights on its standardised features, averaged over the
  shards by the examples each learned (as serving averages them, ``Folded.average``).
* lifetime value: fitted population parameters, not feature weights: none.
* demand forecasts: a time-series model per series, without features: none; the card
  gives each level's MASE against seasonal-naive.
* send time: each customer's own decayed hour-of-week activity, no learned weights: the
  fixed weight of each kind of activity instead.
* next purchase: read from the lifetime-value fit's BG/NBD parameters and the
  customer's own orders: none.
* personas: centres, not weights: none (the card gives each feature's spread).

>>> from cdpulse.models.churn.learner import ChurnLearner
>>> card = churn_card(ChurnLearner.fresh().snapshot(), "cdp.training")
>>> card.version, card.examples, card.quality["roc_auc"]
(1, 0, Figure(value=None, unknown='no labels yet'))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

from cdpulse.kpis.fields import DAY_MS
from cdpulse.models.campaign.features import FEATURE_NAMES as CAMPAIGN_FEATURES
from cdpulse.models.campaign.model import CampaignSnapshot
from cdpulse.models.churn.features import FEATURE_NAMES
from cdpulse.models.churn.model import Snapshot
from cdpulse.models.churn.scoring import health_of
from cdpulse.models.clv.lifetime import ClvSnapshot
from cdpulse.models.drift import DriftReport, Status, unknown_report
from cdpulse.models.forecast.book import LEVELS, ForecastBook
from cdpulse.models.forecast.model import (
    ALPHA,
    BETA,
    GAMMA,
    HORIZON,
    PHI,
    SEASON,
    WARM_DAYS,
)
from cdpulse.models.health import HealthPolicy, ModelHealth, assess, assess_drift
from cdpulse.models.personas import FEATURES as PERSONA_FEATURES
from cdpulse.models.personas_learner import PersonaState
from cdpulse.models.quality import FIGURES, ModelQuality
from cdpulse.models.reco.ranker import FEATURES as RANKER_FEATURES
from cdpulse.models.reco.ranker import Ranker
from cdpulse.models.reco.recommender import Recommender
from cdpulse.models.reco.state import ALL, MemoryState
from cdpulse.models.reco_stream import RecoSnapshot

NOT_TRACKED = "not tracked for this model"


class Feature(msgspec.Struct, frozen=True):
    """One input of a model and its global importance (None: not available, see the card)."""

    name: str
    importance: float | None = None
    weight: float | None = None  # on the raw feature, where the model has one
    std: float | None = None  # the feature's standard deviation in the training data


class Figure(msgspec.Struct, frozen=True):
    """One live quality figure: its value, or None and why it is unknown."""

    value: float | None
    unknown: str = ""


class Drift(msgspec.Struct, frozen=True):
    """The model's drift: its inputs' and its score's distributions, recent window against
    a reference (``report``, computed by the learner: ``models/drift.py``), with
    ``status`` the card's ``drift_status`` and ``unknown`` why it is unknown; and where a
    detector watches the error stream (churn: ADWIN), its alarms, or why they are
    unknown."""

    status: Status
    unknown: str = ""
    report: DriftReport | None = None
    detector: str | None = None
    alarms: int | None = None
    alarms_unknown: str = ""


NO_REPORT = (
    "no drift report yet: the learner publishes one every CDPULSE_DRIFT_SECONDS once the "
    "model has learned"
)


# Why the models other than churn, lifetime value and the recommender have no health.
UNASSESSED = {
    "offers": "offers' drift is not tracked (a reward carries no event time), nor is a "
    "quality floor set for their rewards",
    "forecast": "no floor is set for the MASE against seasonal-naive, its live check",
    "send_time": "a rule over each customer's own activity, no population model",
    "next_purchase": "read from the lifetime-value fit: see GET /v1/models/clv",
    "personas": "no floor is set for the silhouette or the stability, its live checks",
}


def unassessed(name: str) -> ModelHealth:
    """The health of model ``name`` of ``UNASSESSED``: unknown, and why."""
    return ModelHealth("unknown", (f"not assessed: {UNASSESSED[name]}",))


def drift_of(report: DriftReport | None, not_tracked: str = "", **detector: Any) -> Drift:
    """The card's drift from the model's newest report (None: none yet, or
    ``not_tracked``, why the model has none)."""
    if report is None:
        return Drift("unknown", not_tracked or NO_REPORT, None, **detector)
    return Drift(report.status, report.unknown, report, **detector)


class TrainingData(msgspec.Struct, frozen=True):
    """Where the model learned from: the source, the offsets learned up to (by partition),
    and the event time its data cover (epoch ms), or why that is not known."""

    source: str
    offsets: dict[str, int]
    event_time_from: int | None = None
    event_time_to: int | None = None
    unknown: str = ""


class ModelCard(msgspec.Struct, frozen=True):
    """A published model described: ``GET /v1/models/{name}``."""

    name: str
    kind: str
    version: int
    examples: int  # training examples (or customers, for a population fit) it learned from
    importance: str  # how the features' importance is computed, or why it is not given
    features: list[Feature]
    quality: dict[str, Figure]
    drift_status: Status  # stable, moderate, drifted, or unknown (``drift.unknown`` says why)
    drift: Drift
    training: TrainingData
    health: ModelHealth  # whether its scores are trusted, and why not (``models/health.py``)
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready builtins."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        out["health"] = self.health.to_json()  # its reasons a list, as JSON reads them back
        return out


def churn_card(snapshot: Snapshot, topic: str, drift: DriftReport | None = None) -> ModelCard:
    """The churn model's card; ``topic``: the training topic it learns from; ``drift``:
    its newest drift report."""
    model = snapshot.model
    if model.kind == "logistic":
        features = _linear(model.pipeline, FEATURE_NAMES)
        importance = LINEAR_IMPORTANCE
    elif (permutation := getattr(model, "permutation", None)) is not None:
        measured = permutation.importance()
        features = [Feature(name, measured[name]) for name in FEATURE_NAMES]
        importance = (
            "permutation importance: the mean increase in log loss when the feature takes "
            "an earlier example's value, on every tenth example before the model learned it "
            f"({permutation.measured} examples measured)"
        )
    else:
        features = [Feature(name) for name in FEATURE_NAMES]
        importance = (
            f"not available for this {model.kind}: it was published before permutation "
            "importance was measured; the learner measures it from its next examples on"
        )
    quality: ModelQuality = snapshot.quality
    span = model.event_times
    drifted = drift_of(
        drift,
        detector="ADWIN on the error |y - p|",
        alarms=quality.drifts,
        alarms_unknown=quality.unknown("drift"),
    )
    return ModelCard(
        name="churn",
        kind=f"churn classifier ({model.kind})",
        version=snapshot.version,
        examples=model.examples,
        importance=importance,
        features=features,
        quality=quality_figures(quality),
        drift_status=drifted.status,
        drift=drifted,
        training=TrainingData(
            topic,
            {"0": snapshot.offset},
            None if span is None else span[0],
            None if span is None else span[1],
            "" if span is not None else "not recorded by the learner that published it",
        ),
        health=health_of(snapshot),
        parameters={"positives": quality.positives},
    )


LINEAR_IMPORTANCE = (
    "|weight| x standard deviation: the logistic regression's weight on the raw feature "
    "times the scaler's standard deviation of it"
)


def _linear(pipeline: Any, names: tuple[str, ...]) -> list[Feature]:
    """The features of a ``StandardScaler | LogisticRegression`` pipeline, importance
    ``LINEAR_IMPORTANCE``."""
    scaler = pipeline["StandardScaler"]
    weights = pipeline["LogisticRegression"].weights
    features = []
    for name in names:
        std = math.sqrt(scaler.vars.get(name, 0.0))
        # River's scaler maps a feature it saw constant to 0: no weight reaches it
        raw = float(weights.get(name, 0.0)) / std if std > 0 else 0.0
        features.append(Feature(name, abs(raw) * std, raw, std))
    return features


CAMPAIGN_NOT_TRACKED = (
    "the learner's drift reports cover churn, the recommender and lifetime value, not "
    "campaign response"
)


def campaign_health(
    snapshot: CampaignSnapshot,
    policy: HealthPolicy = HealthPolicy(),  # noqa: B008 (frozen)
) -> ModelHealth:
    """Campaign response's health: its live quality against the floor (no drift report)."""
    return assess(snapshot.quality, unknown_report(CAMPAIGN_NOT_TRACKED), policy)


def campaign_card(
    snapshot: CampaignSnapshot,
    topic: str,
    policy: HealthPolicy = HealthPolicy(),  # noqa: B008 (frozen)
) -> ModelCard:
    """The campaign-response model's card; ``topic``: the topic it learns from; its health
    is its live quality's (``policy``: the api's, from settings)."""
    quality: ModelQuality = snapshot.quality
    drifted = drift_of(
        None,
        not_tracked=CAMPAIGN_NOT_TRACKED,
        detector="ADWIN on the error |y - p|",
        alarms=quality.drifts,
        alarms_unknown=quality.unknown("drift"),
    )
    return ModelCard(
        name="campaign",
        kind="campaign-response classifier (logistic)",
        version=snapshot.version,
        examples=snapshot.model.examples,
        importance=LINEAR_IMPORTANCE,
        features=_linear(snapshot.model.pipeline, CAMPAIGN_FEATURES),
        quality=quality_figures(quality),
        drift_status=drifted.status,
        drift=drifted,
        training=TrainingData(
            topic, {"0": snapshot.offset}, unknown="the campaign learner keeps no event-time span"
        ),
        parameters={"positives": quality.positives},
        health=campaign_health(snapshot, policy),
    )


def quality_figures(quality: ModelQuality) -> dict[str, Figure]:
    """Prequential ROC AUC and log loss, as /metrics has them: None and why while unknown."""
    values = {"roc_auc": quality.auc, "log_loss": quality.log_loss}
    out: dict[str, Figure] = {}
    for figure in FIGURES:
        if figure in values:
            why = quality.unknown(figure)
            out[figure] = Figure(None if why else round(values[figure], 6), why)
    return out


def clv_card(
    snapshot: ClvSnapshot,
    drift: DriftReport | None = None,
    policy: HealthPolicy = HealthPolicy(),  # noqa: B008 (frozen)
) -> ModelCard:
    """The lifetime-value models' card: BG/NBD and Gamma-Gamma parameters, customers fitted;
    its health is its inputs' drift (``policy``: the api's, from settings)."""
    purchases, spend = snapshot.model.purchases, snapshot.model.spend
    as_of = getattr(snapshot, "as_of", None)  # None in snapshots from before it was kept
    return ModelCard(
        name="clv",
        kind="lifetime value (BG/NBD x Gamma-Gamma)",
        version=snapshot.version,
        examples=snapshot.customers,
        importance=(
            "not applicable: BG/NBD and Gamma-Gamma are population parameters fitted on "
            "every customer's summary, not weights on features"
        ),
        features=[Feature(name) for name in ("x", "t_x", "T", "m")],
        quality={"fit": Figure(None, NOT_TRACKED)},
        drift_status=drift.status if drift else "unknown",
        drift=drift_of(drift),
        training=TrainingData(
            "order summaries (one per customer, kept by the workers in Redis)",
            {},
            None,
            as_of,
            "" if as_of is not None else "the event time of the fit was not recorded",
        ),
        health=assess_drift(drift, policy),
        parameters={
            "bgnbd": msgspec.to_builtins(purchases),
            "gamma_gamma": msgspec.to_builtins(spend),
            "customers_fitted": snapshot.customers,
            "as_of": as_of,
        },
    )


def reco_card(
    shards: Mapping[int, RecoSnapshot],
    topic: str,
    drift: DriftReport | None = None,
    policy: HealthPolicy = HealthPolicy(),  # noqa: B008 (frozen)
) -> ModelCard:
    """The recommender's card from each shard's newest snapshot (at least one); its health
    is its ranker's inputs' drift (``policy``: the api's, from settings)."""
    if not shards:
        raise ValueError("reco_card needs at least one shard's snapshot")
    recommenders = [s.recommender for _, s in sorted(shards.items())]
    rankers = [r.ranker for r in recommenders]
    learners = [r for r in rankers if isinstance(r, Ranker)]  # published shards: all are
    learned = sum(r.learned for r in rankers)
    importances: list[float | None] = [None] * len(RANKER_FEATURES)
    if learned and len(learners) == len(rankers):
        shares = [r.learned / learned for r in learners]
        importances = [
            abs(sum(share * r.weights[i] for share, r in zip(shares, learners, strict=True)))
            for i in range(len(RANKER_FEATURES))
        ]
    served = Recommender.merge(recommenders, remember=False)
    folded = served.ranker.folded()
    products: set[str] = set()
    customers = 0
    spans: list[tuple[int, int]] = [
        span for r in recommenders if (span := getattr(r, "event_times", None)) is not None
    ]
    for snapshot in shards.values():
        state = snapshot.recommender.state
        if isinstance(state, MemoryState):
            products.update(state.popularity_scores(ALL))
            customers += state.customers()
    return ModelCard(
        name="reco",
        kind="recommender (co-visitation, category and trending candidates, logistic ranker)",
        version=sum(s.version for s in shards.values()),
        examples=learned,
        importance=(
            "|weight| on the standardised feature (raw weight x standard deviation), "
            "shards averaged by the examples each learned"
            if learned
            else "none yet: the ranker has learned no example"
        ),
        features=[
            Feature(name, importance, weight)
            for name, importance, weight in zip(
                RANKER_FEATURES, importances, folded.weights, strict=True
            )
        ],
        quality={"hit_rate": Figure(None, "not measured live; `cdpulse evaluate reco` replays it")},
        drift_status=drift.status if drift else "unknown",
        drift=drift_of(drift),
        training=TrainingData(
            topic,
            {str(shard): s.offset for shard, s in sorted(shards.items())},
            min(span[0] for span in spans) if spans else None,
            max(span[1] for span in spans) if spans else None,
            "" if spans else "no item event learned yet, or learned before it was recorded",
        ),
        health=assess_drift(drift, policy),
        parameters={
            "model_version": served.model_version,
            "shards": len(shards),
            "products_known": len(products),
            "customers_known": customers,
            "intercept": folded.intercept,
        },
    )


SEND_TIME_VERSION = 1  # the rules of ``profile/send_hours.py`` and ``models/send_time.py``


def send_time_card() -> ModelCard:
    """The send-time model's card: a rule over each customer's own activity, so its card
    is its rules; its live hit rate is counted by the workers (their /metrics)."""
    from cdpulse.models.send_time import MIN_EVIDENCE
    from cdpulse.profile.send_hours import WEEKS_KEPT, WEIGHTS

    return ModelCard(
        name="send_time",
        kind="best send window (each customer's decayed hour-of-week activity, own time)",
        version=SEND_TIME_VERSION,
        examples=0,
        importance="fixed weights per kind of activity (not learned): weight is each one's",
        features=[Feature(name, weight=float(w)) for name, w in WEIGHTS.items()],
        quality={
            "hit_rate": Figure(
                None,
                "counted live by the workers, not the api: cdpulse_send_time_opens_total"
                "{outcome} on their /metrics; `cdpulse evaluate send-time` replays it",
            )
        },
        drift_status="unknown",
        drift=drift_of(None, "not tracked: a per-customer statistic, no population model"),
        training=TrainingData(
            "each customer's own email opens and clicks, orders and page views (send_hours)",
            {},
            unknown="kept per customer in the profile, not a training set",
        ),
        health=unassessed("send_time"),
        parameters={"weeks_kept": WEEKS_KEPT, "min_evidence": MIN_EVIDENCE, "window_hours": 3},
    )


def next_purchase_card(clv: ClvSnapshot) -> ModelCard:
    """The next-purchase model's card: the lifetime-value fit's BG/NBD purchase rate prior,
    which shrinks each customer's own mean gap between orders."""
    purchases = clv.model.purchases
    as_of = getattr(clv, "as_of", None)
    return ModelCard(
        name="next_purchase",
        kind="next order date (own mean gap shrunk by the BG/NBD purchase-rate prior)",
        version=clv.version,
        examples=clv.customers,
        importance="not applicable: the cycle is (alpha + t_x) / (r + x) days, no weights",
        features=[Feature(name) for name in ("orders", "first_order_at", "last_order_at")],
        quality={
            "mae_days": Figure(
                None,
                "counted live by the workers, not the api: cdpulse_next_purchase_error_seconds"
                "_total / cdpulse_next_purchase_orders_measured_total / 86400 on their "
                "/metrics; `cdpulse evaluate next-purchase` replays it",
            )
        },
        drift_status="unknown",
        drift=drift_of(None, "not tracked apart from the lifetime-value fit it reads (clv)"),
        training=TrainingData(
            "the lifetime-value fit (GET /v1/models/clv)",
            {},
            None,
            as_of,
            "" if as_of is not None else "the event time of the fit was not recorded",
        ),
        health=unassessed("next_purchase"),
        parameters={"r": purchases.r, "alpha_days": purchases.alpha, "clv_version": clv.version},
    )


def persona_card(state: PersonaState, topic: str) -> ModelCard:
    """The personas' card: sequential k-means, its live silhouette and stability."""
    view, measured, model = state.view, state.quality, state.model
    warming = f"warming up: {model.n} of {model.warmup} examples buffered"

    def figure(value: float | None, why: str) -> Figure:
        return Figure(value, "" if value is not None else why)

    return ModelCard(
        name="personas",
        kind="customer personas (sequential k-means over standardised features)",
        version=state.version,
        examples=model.n,
        importance="not applicable: centres, no weights (GET /v1/personas gives each centre)",
        features=[
            Feature(name, std=None if view is None else view.scale[j])
            for j, name in enumerate(PERSONA_FEATURES)
        ],
        quality={
            "silhouette": figure(measured.silhouette if measured else None, warming),
            "stability": figure(
                measured.stability if measured else None,
                warming if measured is None else "fewer than two checkpoints yet",
            ),
        },
        drift_status="unknown",
        drift=drift_of(None, "not tracked: stability between checkpoints is its live check"),
        training=TrainingData(
            topic, {"0": state.offset}, unknown="the persona learner keeps no event-time span"
        ),
        health=unassessed("personas"),
        parameters={"k": model.k, "warmup": model.warmup, "checkpoint_examples": model.every},
    )


def forecast_card(book: ForecastBook) -> ModelCard:
    """The demand forecasts' card: one Holt-Winters per series and target, their quality
    against seasonal-naive (MASE, all horizons 1-28) per level and target."""
    first = min((s.first_day for s in book.series.values()), default=None)
    quality = {
        f"{q.level}_{q.target}_mase": Figure(q.mase, "" if q.mase is not None else "naive exact")
        for q in book.quality()
        if q.horizon == 0
    }
    if not quality:
        quality["mase"] = Figure(None, f"no forecast scored yet: a series needs {WARM_DAYS} days")
    return ModelCard(
        name="forecast",
        kind="demand forecasts (River Holt-Winters per series, weekly season, on log1p)",
        version=book.version,
        examples=max((s.units.days for s in book.series.values()), default=0),
        importance="not applicable: a time-series model per series, no features",
        features=[],
        quality=quality,
        drift_status="unknown",
        drift=drift_of(None, "not tracked: the MASE against seasonal-naive is its live check"),
        training=TrainingData(
            "the KPI counters' closed days (orders, revenue, units by category and product)",
            {},
            None if first is None else first * DAY_MS,
            None if book.last_day is None else (book.last_day + 1) * DAY_MS - 1,
            "" if first is not None else "no day learned yet",
        ),
        health=unassessed("forecast"),
        parameters={
            "alpha": ALPHA,
            "beta": BETA,
            "gamma": GAMMA,
            "damping": PHI,
            "season_days": SEASON,
            "horizon_days": HORIZON,
            "series": {level: sum(1 for key in book.series if key[0] == level) for level in LEVELS},
            "top_products": book.products,
        },
    )
