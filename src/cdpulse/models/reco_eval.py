"""Prequential next-item evaluation of the recommender against a popularity baseline.

Events are replayed in event-time order and turned into the records a profile worker
forwards to the learners (``item_events``: profiles kept with the real profile rules,
so each record carries the context the worker would give it). At each product view,
cart add and order of a customer, the recommender first recommends from the past alone,
then the event's products are looked up in its top k; only then does it learn the
record. The baseline, the k most popular products (the same trending state, the same
exclusions), is scored beside it.

With ``shards`` > 1, customers are split between that many learners as the partitions
of ``cdp.reco-events`` split them, and recommendations are served from the learners
merged (``Recommender.merge``), as in production; with 1 the same merge serves one.

Anonymous ids are resolved to their customer once an event carries both (identify, or
any later event); what a visitor did before that stays under the anonymous id.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdpulse.contract.validation import Rejection, validate
from cdpulse.models.reco.config import RecoConfig
from cdpulse.models.reco.interactions import LEVEL_OF_TYPE
from cdpulse.models.reco.recommender import Recommender
from cdpulse.models.reco.shards import shard_of
from cdpulse.models.reco_stream import ITEM_TYPES, ItemEvent
from cdpulse.privacy.consent import allows
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules, apply, new_profile

# Evaluation replays history: no event is "in the future" of it.
_REPLAY_NOW = datetime(9000, 1, 1, tzinfo=UTC)
_TYPE_OF_LEVEL = {level: kind for kind, level in LEVEL_OF_TYPE.items()}


def item_events(
    events: Iterable[Mapping[str, Any]],
    *,
    consent: bool = False,
    pseudonyms: Pseudonymizer | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[ItemEvent]:
    """The ``ItemEvent`` records a profile worker forwards for ``events``, in order.

    ``consent``: only customers who allow analytics and personalization, as the worker
    does (evaluation learns from everyone). ``pseudonyms``: customers by pseudonym, as on
    the topic. Events the contract rejects are skipped.
    """
    rules = Rules()
    profiles: dict[str, Profile] = {}
    aliases: dict[str, str] = {}
    for raw in events:
        if progress is not None:
            progress(1)
        event = validate(dict(raw), now=_REPLAY_NOW)
        if isinstance(event, Rejection):
            continue
        if event.customer_id is not None and event.anonymous_id is not None:
            aliases.setdefault(event.anonymous_id, event.customer_id)
        key = event.customer_id or aliases.get(event.key, event.key)
        profile = profiles.setdefault(key, new_profile(key))
        if event.type in ITEM_TYPES and (
            not consent or (allows(profile, "analytics") and allows(profile, "personalization"))
        ):
            customer = key if pseudonyms is None else pseudonyms.of_id(key)
            yield ItemEvent.of(customer, event, profile)
        apply(profile, event, rules)


def _ndcg(ranked: list[str], relevant: set[str], k: int) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, p in enumerate(ranked[:k]) if p in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal


class _Score:
    def __init__(self) -> None:
        self.hits = 0.0
        self.ndcg = 0.0

    def add(self, ranked: list[str], relevant: set[str], k: int) -> None:
        self.hits += bool(relevant.intersection(ranked[:k]))
        self.ndcg += _ndcg(ranked, relevant, k)


def evaluate(
    events: Iterable[Mapping[str, Any]],
    k: int = 10,
    config: RecoConfig | None = None,
    progress: Callable[[int], None] | None = None,
    shards: int = 1,
) -> dict[str, Any]:
    """Hit rate and NDCG at ``k`` of the recommender and of popularity, overall and by type.

    Also over *new* items only: events whose products the customer had not viewed,
    added or bought before (re-views are common and easy; discovery is the hard part).
    """
    learners = [Recommender(config) for _ in range(shards)]
    seen: dict[str, set[str]] = {}
    groups = ("all", "new", *LEVEL_OF_TYPE)
    scores = {g: (_Score(), _Score()) for g in groups}
    counts = dict.fromkeys(groups, 0)
    for item in item_events(events, progress=progress):
        key = item.customer_id
        # the learners change after every event: merged afresh, nothing remembered
        served = Recommender.merge(learners, remember=False)
        relevant = {i.product_id for i in item.items}
        ours = [r.product_id for r in served.recommend(key, item.context, k)]
        baseline = [r.product_id for r in served.popular(key, k)]
        mine = seen.setdefault(key, set())
        for group in ("all", _TYPE_OF_LEVEL[item.items[0].level], "new"):
            if group == "new" and relevant & mine:
                continue
            counts[group] += 1
            scores[group][0].add(ours, relevant, k)
            scores[group][1].add(baseline, relevant, k)
        mine |= relevant
        learners[shard_of(key, shards)].learn_one(key, item.items, item.context)
    merged = Recommender.merge(learners)
    result: dict[str, Any] = {"k": k, "shards": shards, "model_version": merged.model_version}
    for group in groups:
        n = max(counts[group], 1)
        ours_score, baseline_score = scores[group]
        result[group] = {
            "events": counts[group],
            "hit": ours_score.hits / n,
            "ndcg": ours_score.ndcg / n,
            "popularity_hit": baseline_score.hits / n,
            "popularity_ndcg": baseline_score.ndcg / n,
        }
    return result


def movielens_events(inter: Path) -> Iterator[dict[str, Any]]:
    """MovieLens-100k as cdpulse events, in time order: each rating an order of one movie.

    ``inter`` is RecBole's ``ml-100k.inter`` (user, item, rating, timestamp in seconds);
    a movie's category is the first genre in ``ml-100k.item`` beside it. A rating is a
    purchase, so a movie once rated is never recommended to that user again. Read from
    where the ``recbole`` wheel installs it: its licence forbids copying it here.
    """
    genres: dict[str, str] = {}
    with inter.with_suffix(".item").open(encoding="latin-1") as lines:
        next(lines)
        for line in lines:
            fields = line.rstrip("\n").split("\t")
            genres[fields[0]] = (fields[3].split() or ["movie"])[0]
    with inter.open(encoding="latin-1") as lines:
        next(lines)
        ratings = sorted(
            (int(float(t)), user, item)
            for user, item, _, t in (line.rstrip("\n").split("\t") for line in lines)
        )
    for n, (t, user, item) in enumerate(ratings):
        movie: dict[str, Any] = {
            "product_id": item,
            "category": genres.get(item, "movie"),
            "price": 0.0,
        }
        yield {
            "event_id": f"ml-{n}",
            "type": "order_completed",
            "timestamp": t * 1000,
            "customer_id": f"u{user}",
            "channel": "web",
            "properties": {
                "order_id": f"ml-{n}",
                "revenue": 0.0,
                "currency": "USD",
                "items": [{**movie, "quantity": 1}],
            },
        }
