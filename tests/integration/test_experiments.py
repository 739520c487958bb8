"""An experiment live on real Kafka, Redis, a worker and the api: exposures served over
HTTP by the api, conversions counted by the worker from the order stream, compared with
counts from the same events."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

from cdpulse.contract.validation import Rejection, validate
from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from tests.integration.conftest import Env, drained, wait_until
from tests.oracle import expected

DEFINITIONS = """\
segments:
  - name: repeat_buyer
    when: orders >= 2
experiments:
  - name: checkout_button
    variants: {control: 1, green: 1, blue: 2}
    window_days: 365
  - name: loyalty_mail
    variants: {control: 1, mail: 1}
    audience: repeat_buyer
"""


def test_exposures_and_conversions_match_the_stream(env: Env, tmp_path: Path) -> None:
    events = list(Shop(customers=200, days=30, seed=5).events())
    now = datetime.now(UTC)
    valid = [e for e in events if not isinstance(validate(dict(e), now=now), Rejection)]
    half = len(valid) // 2
    # A customer who withholds analytics consent keeps a minimised profile (no order
    # times), so its conversions are not counted: such customers are not exposed here.
    aliases = expected(valid, now=now).aliases
    withholding = {
        aliases.get(owner, owner)
        for e in valid
        if (owner := e.get("customer_id") or e["anonymous_id"])
        if e["type"] == "consent_updated" and e["properties"]["purposes"].get("analytics") is False
    }
    customers = sorted(
        {e["customer_id"] for e in valid[:half] if e.get("customer_id")} - withholding
    )
    definitions = tmp_path / "segments.yaml"
    definitions.write_text(DEFINITIONS, encoding="utf-8")
    api = env.roles(CDPULSE_SEGMENTS_FILE=str(definitions)).api

    with Producer.from_settings(env.settings) as producer:
        for event in valid[:half]:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the worker to drain the first half")

    assigned: dict[str, str] = {}
    with httpx.Client(base_url=api.url, timeout=10) as http:
        # Assignment exposes, so it is a POST: a GET (a prefetcher, a crawler) writes nothing.
        peek = http.get(f"/v1/experiments/checkout_button/assignment/{customers[0]}")
        assert peek.status_code == 405, peek.text
        for customer in customers:
            first = http.post(f"/v1/experiments/checkout_button/assignment/{customer}").json()
            again = http.post(f"/v1/experiments/checkout_button/assignment/{customer}").json()
            assert first["first_exposure"] and not again["first_exposure"]
            assert again["variant"] == first["variant"]
            assigned[customer] = first["variant"]
        repeat = set(http.get("/v1/segments/repeat_buyer/members?limit=1000").json()["members"])
        for customer in customers:
            answer = http.post(f"/v1/experiments/loyalty_mail/assignment/{customer}").json()
            assert (answer["variant"] is not None) == (customer in repeat), answer
        assert http.get("/v1/experiments/nope").status_code == 404

    with Producer.from_settings(env.settings) as producer:
        for event in valid[half:]:
            producer.send(event)
    wait_until(lambda: drained(env.settings), 300, "the worker to drain the second half")

    buyers = {e["customer_id"] for e in valid[half:] if e["type"] == "order_completed"} & set(
        assigned
    )
    exposures = Counter(assigned.values())
    conversions = Counter(assigned[c] for c in buyers)
    assert sum(conversions.values()) > 10, "the stream should convert some exposed customers"
    with httpx.Client(base_url=api.url, timeout=10) as http:
        result = http.get("/v1/experiments/checkout_button").json()
    arms = {v["name"]: v for v in result["variants"]}
    assert {n: a["exposures"] for n, a in arms.items()} == {
        n: exposures[n] for n in ("control", "green", "blue")
    }
    assert {n: a["conversions"] for n, a in arms.items()} == {
        n: conversions[n] for n in ("control", "green", "blue")
    }
    for arm in arms.values():
        lo, hi = arm["interval"]
        assert lo <= arm["conversion_rate"] <= hi
    assert 0 <= arms["blue"]["versus_control"]["p_value"] <= 1
    wait_until(
        lambda: (
            api.metric("cdpulse_experiment_conversions", {"experiment": "checkout_button"})
            == len(buyers)
        ),
        30,
        "the conversions gauge",
    )
