"""Firings carry ``deliver_at`` on real Kafka, Redis and worker processes.

Three customers in three time zones (+05:30, -03:30 and none known) have weeks of email
opens and visits at their own evening or midnight hours, then order: the cross-sell
rule (``deliver: best_window``) must publish, for each order, the ``deliver_at`` that
``tests/unit/test_deliver_at.expected`` computes from the same events with ``datetime``;
the high-intent rule (not marketing: ``now`` by default) must publish it null.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from cdpulse.contract.trigger import TriggerMessage
from cdpulse.producer import Producer
from tests import oracle
from tests.integration.conftest import Env, consume_all, decided, drained, wait_until
from tests.unit.test_deliver_at import expected
from tests.unit.test_send_time import stamped

MINUTE, HOUR, DAY = oracle.MINUTE, oracle.HOUR, oracle.DAY
RULES = {
    "rules": [
        {"name": "xsell", "kind": "cross_sell", "marketing": False, "deliver": "best_window"},
        {"name": "intent", "kind": "high_intent", "views": 3, "marketing": False},
    ]
}


def made(customer: str, kind: str, t: int, offset: int | None, n: int, **props: Any) -> Any:
    return {
        "event_id": f"{customer}-{n}",
        "type": kind,
        "timestamp": stamped(t, offset),
        "customer_id": customer,
        "channel": "email" if kind == "email_opened" else "web",
        "properties": props,
    }


def history(customer: str, offset: int | None, hour: int, now: datetime) -> list[Any]:
    """Opens and visits at ``hour`` local on two days a week, for five weeks."""
    zone = timezone(timedelta(minutes=offset or 0))
    today = now.astimezone(zone).replace(hour=hour, minute=0, second=0, microsecond=0)
    out = []
    for back in range(7, 40, 7):
        for day in (back, back + 2):
            t = int((today - timedelta(days=day)).timestamp() * 1000)
            out.append(made(customer, "email_opened", t, offset, len(out), campaign_id="n1"))
            out.append(made(customer, "page_viewed", t + 20 * MINUTE, offset, len(out), url="/"))
    return out


def ordered(customer: str, t: int, offset: int | None, n: int) -> Any:
    item = {"product_id": "P-1", "category": "games", "price": 5.0, "quantity": 1}
    props = {"order_id": f"O-{customer}", "revenue": 5.0, "currency": "EUR", "items": [item]}
    return made(customer, "order_completed", t, offset, n, **props)


def test_firings_carry_the_deliver_at_of_the_customers_send_window(
    env: Env, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES), encoding="utf-8")
    segments = tmp_path / "segments.yaml"
    segments.write_text("rfm: false\n", encoding="utf-8")
    overrides = {
        # One partition per topic: the low watermark needs one late event on each topic.
        "CDPULSE_TOPIC_PARTITIONS": "1",
        "CDPULSE_TRIGGER_RULES": str(rules),
        "CDPULSE_SEGMENTS_FILE": str(segments),
        "CDPULSE_TRIGGER_LATENESS_SECONDS": "0",
    }
    settings = env.settings.model_copy(
        update={"topic_partitions": 1, "trigger_lateness_seconds": 0.0}
    )
    env.roles(**overrides)

    now = datetime.now(UTC).replace(microsecond=0)
    at = int(now.timestamp() * 1000) - 3 * HOUR
    zones = {"C-1": (330, 20), "C-2": (-210, 0), "C-3": (None, 9)}
    events: dict[str, list[Any]] = {}
    for customer, (offset, hour) in zones.items():
        events[customer] = history(customer, offset, hour, now) if customer != "C-3" else []
        n = len(events[customer])
        views = [
            made(customer, "product_viewed", at + i * MINUTE, offset, n + i, product_id="P-1",
                 category="games", price=5.0)
            for i in range(3)
        ]  # fmt: skip
        events[customer] += [*views, ordered(customer, at + 10 * MINUTE, offset, n + 3)]
    # The newest event of each topic moves the low watermark past every firing.
    closing = [
        made("C-9", "page_viewed", at + HOUR, None, 0, url="/"),
        ordered("C-9", at + HOUR, None, 1),
        made("C-9", "identify", at + HOUR, None, 2),
    ]
    sent = sorted(
        (e for e in [*closing, *(e for es in events.values() for e in es)]),
        key=lambda e: oracle.millis(e["timestamp"]),
    )
    with Producer.from_settings(settings, create_topics=False) as producer:
        for event in sent:
            producer.send(event)
    wait_until(lambda: drained(settings), 120, "the worker to drain its topics")
    wait_until(lambda: decided(settings), 120, "the worker to decide what became due")

    # Cross-sell for each of the four orders, high intent for each of the three viewers.
    records = consume_all(settings, settings.topic_triggers, 7)
    messages = [TriggerMessage.model_validate_json(r.value) for r in records]
    assert sorted((m.rule, m.customer_id) for m in messages) == sorted(
        [("xsell", c) for c in (*zones, "C-9")] + [("intent", c) for c in zones]
    )
    got = {m.customer_id: m.deliver_at for m in messages if m.rule == "xsell"}
    want = {
        c: expected(events.get(c, closing), at + (HOUR if c == "C-9" else 10 * MINUTE)) for c in got
    }
    assert {
        c: None if w is None else datetime.fromtimestamp(w / 1000, UTC) for c, w in want.items()
    } == got
    # The two customers with weeks of evenings have a window; the others none.
    assert want["C-1"] is not None and want["C-2"] is not None
    assert want["C-3"] is None and want["C-9"] is None
    assert all(m.deliver_at is None for m in messages if m.rule == "intent")
