"""The live fairness report on the real Kafka, Redis, worker, learner and api: customers of
three countries are identified through the worker; churn examples reach the learner
through its training topic, one input measured 25 days too high for one country (a
biased feature) while their churn follows the true value. ``GET /v1/fairness`` answers
with the report an in-process learner and ``make_report`` compute from the same examples
and profiles: the biased country's customers are flagged at risk more often than their
churn warrants, the others flagged against it (README: Online models, Fairness)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from cdpulse.app.fairness import make_report
from cdpulse.models.churn.features import FEATURE_NAMES
from cdpulse.models.churn.labels import Example
from cdpulse.models.churn.learner import ChurnLearner
from cdpulse.producer import Producer
from cdpulse.profile.model import Profile
from cdpulse.settings import Settings
from cdpulse.triggers.rules import load_rules
from tests.integration.conftest import Env, drained, wait_until
from tests.integration.test_drift import learned
from tests.oracle import pseudonym_id

COUNTRIES = ("DE", "FR", "NL")
PER_COUNTRY, PER_CUSTOMER = 60, 4
BIASED = "FR"
T0 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
DAY = 86_400_000


def customers() -> list[tuple[str, str]]:
    return [(f"C-{c}-{i}", c) for c in COUNTRIES for i in range(PER_COUNTRY)]


def identify(customer: str, country: str, n: int) -> dict[str, Any]:
    return {
        "event_id": f"id-{customer}",
        "type": "identify",
        "timestamp": T0 + n,
        "customer_id": customer,
        "channel": "web",
        "properties": {"traits": {"country": country}},
    }


def examples() -> list[Example]:
    """Silence predicts churn for everyone; one country's silence is read 25 days long."""
    rng = random.Random(5)
    out = []
    for k in range(PER_CUSTOMER):
        for customer, country in customers():
            silent = rng.uniform(0, 40)
            label = int(rng.random() < (0.8 if silent > 25 else 0.1))
            features = [0.0] * len(FEATURE_NAMES)
            features[FEATURE_NAMES.index("days_since_last_visit")] = silent + 25 * (
                country == BIASED
            )
            at = T0 + (40 + k) * DAY
            out.append(Example(pseudonym_id(customer), at - 30 * DAY, at, label, features))
    return out


def test_the_live_report_flags_a_biased_feature(env: Env) -> None:
    groups = '["country"]'
    roles = env.roles(learner=True, CDPULSE_FAIRNESS_SECONDS="1", CDPULSE_FAIRNESS_GROUPS=groups)
    people = customers()
    with Producer.from_settings(env.settings) as producer:
        for n, (customer, country) in enumerate(people):
            producer.send(identify(customer, country, n))
    wait_until(lambda: drained(env.settings), 60, "the customers to be identified")
    sent = examples()
    learned(env, sent)

    # The oracle: the same examples through an in-process learner; the profiles as the
    # worker made them, as far as the report reads them (the country, the last event).
    twin = ChurnLearner.fresh()
    scored = twin.learn(list(enumerate(sent))).scored
    window = [
        (e.profile_id, values[-1], e.label) for e, (_, _, values) in zip(sent, scored, strict=True)
    ]
    profiles = {
        pseudonym_id(c): Profile(
            id=c, customer_id=c, last_seen=T0 + n, traits={"country": (T0 + n, country)}
        )
        for n, (c, country) in enumerate(people)
    }
    settings = Settings(fairness_groups=["country"], pseudonym_key="k")
    rules = [r.name for r in load_rules("").rules]
    expected = json.loads(msgspec.json.encode(make_report(window, profiles, None, rules, settings)))

    def served() -> dict[str, Any] | None:
        answer = httpx.get(f"{roles.api.url}/v1/fairness", timeout=10)
        if answer.status_code != 200:
            return None
        found: dict[str, Any] = answer.json()
        churn = found["subjects"][0]
        return found if churn["members"] == len(sent) else None

    wait_until(lambda: served() is not None, 60, "a fairness report over every example")
    report = served()
    assert report == expected
    churn = report["subjects"][0] if report else {}
    (country,) = churn["attributes"]
    by_group = {g["group"]: g for g in country["groups"]}
    assert country["best"] == BIASED
    assert all(by_group[c]["flagged"] for c in COUNTRIES if c != BIASED)
    # the biased country is predicted above what it observes; the others are not
    assert by_group[BIASED]["calibration_gap"] > 0.15
    assert all(abs(by_group[c]["calibration_gap"]) < 0.15 for c in COUNTRIES if c != BIASED)
    assert report is not None and len(report["flagged"]) == 2
