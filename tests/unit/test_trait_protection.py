"""Personal traits leave for Kafka as pseudonyms and sealed copies, never in clear, whatever
their JSON type: ``protect_traits``, the one rule of the collector and ``Producer``, and the
worker's own ``TraitPolicy.admit`` (README: Privacy and security)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cdpulse.contract.validation import Rejection, validate
from cdpulse.privacy.data_keys import protect_traits, sealing_customer, unseal
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.privacy.traits import TraitPolicy
from cdpulse.producer import NO_PSEUDONYM_KEY, Producer, ProducerRejected
from cdpulse.settings import Settings
from tests import oracle

POLICY = TraitPolicy(pseudonymizer=Pseudonymizer(oracle.PSEUDONYM_KEY))
KEY = bytes(range(32))
T0 = 1_767_225_600_000

# Every JSON type a personal trait can arrive as, and the text it is pseudonymised as.
VALUES: list[tuple[Any, str]] = [
    ("Alice.Doe@Example.com", "Alice.Doe@Example.com"),
    (4915112345678, "4915112345678"),
    (4915112345678.0, "4915112345678"),
    (-4930123456, "-4930123456"),
    (30.5, "30.5"),
    (True, "true"),
    (False, "false"),
    ({"mobile": "+49 151 1234", "home": 301234}, '{"home":301234,"mobile":"+49 151 1234"}'),
    (["+49 151 1234", 301234], '["+49 151 1234",301234]'),
]


def identify(traits: dict[str, Any], customer_id: str | None = "C-1") -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "e1",
        "type": "identify",
        "timestamp": T0,
        "channel": "web",
        "properties": {"traits": traits},
    }
    if customer_id is not None:
        event["customer_id"] = customer_id
    return event


def protected(traits: dict[str, Any]) -> dict[str, Any]:
    event = identify(traits)
    assert sealing_customer(event, POLICY) == "C-1"
    out = protect_traits(event, POLICY, KEY)
    traits_out: dict[str, Any] = out["properties"]["traits"]
    return traits_out


def planted(value: Any) -> list[str]:
    """The texts that would betray ``value`` in a message."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in planted(v)]
    if isinstance(value, list):
        return [t for v in value for t in planted(v)]
    if isinstance(value, bool):
        return []  # true/false are in every message; a bool reveals nothing to search for
    return [json.dumps(value).strip('"'), str(value)]


@pytest.mark.parametrize(("value", "text"), VALUES, ids=[repr(v)[:20] for v, _ in VALUES])
@pytest.mark.parametrize("name", ["email", "phone"])
def test_a_personal_trait_of_any_json_type_leaves_as_pseudonym_and_sealed_copy(
    name: str, value: Any, text: str
) -> None:
    traits = protected({name: value})
    assert traits[name] == oracle.pseudonym(name, text)
    assert unseal(KEY, "C-1", traits[name + "_sealed"]) == text
    assert unseal(KEY, "C-2", traits[name + "_sealed"]) is None  # bound to its customer
    assert set(traits) == {name, name + "_sealed"}
    message = json.dumps(traits)
    assert not [p for p in planted(value) if p in message]


def test_a_number_and_its_text_are_one_person() -> None:
    assert (
        protected({"phone": 4915112345678})["phone"]
        == (protected({"phone": "4915112345678"})["phone"])
    )
    assert (
        protected({"phone": 4915112345678.0})["phone"]
        == (protected({"phone": 4915112345678})["phone"])
    )


def test_traits_that_are_not_personal_pass_unchanged() -> None:
    others = {"country": "DE", "plan": 3, "vip": True, "score": 0.5, "nested": {"a": [1]}}
    traits = protected({**others, "email": "a@x.io"})
    assert {k: traits[k] for k in others} == others
    assert sealing_customer(identify(others), POLICY) is None
    assert protect_traits(identify(others), POLICY, KEY) == identify(others)


def test_a_null_personal_trait_stays_null_and_needs_no_key() -> None:
    assert sealing_customer(identify({"email": None}), POLICY) is None
    assert protected({"email": None, "phone": 1}).get("email", "absent") is None


def test_only_the_exact_shape_of_a_pseudonym_passes_unhashed() -> None:
    real = oracle.pseudonym("email", "a@x.io")
    traits = protected({"email": real, "phone": "hmac:+49 151 1234"})
    assert traits["email"] == real and "email_sealed" not in traits
    assert traits["phone"] == oracle.pseudonym("phone", "hmac:+49 151 1234")
    assert "151" not in json.dumps(traits)


def test_a_sealed_copy_in_clear_or_under_another_key_is_dropped() -> None:
    real = oracle.pseudonym("email", "a@x.io")
    genuine = protected({"email": "a@x.io"})["email_sealed"]
    kept = protected({"email": real, "email_sealed": genuine})
    assert kept == {"email": real, "email_sealed": genuine}
    forged = protect_traits(
        identify({"email": real, "email_sealed": "a@x.io", "phone_sealed": 4915112345678}),
        POLICY,
        bytes(32),
    )
    assert forged["properties"]["traits"] == {"email": real}


def test_a_protected_event_still_passes_the_contract() -> None:
    # 99 other traits and a 128-character personal trait name: no room, or no valid
    # name, for a sealed copy; the pseudonym alone travels.
    long_name = "e" * 128
    policy = TraitPolicy(
        allowed=frozenset({"email", long_name}),
        personal=frozenset({"email", long_name}),
        pseudonymizer=POLICY.pseudonymizer,
    )
    traits = {f"t{i}": i for i in range(98)} | {"email": "a@x.io", long_name: "b@x.io"}
    out = protect_traits(identify(traits), policy, KEY)
    now = datetime.fromtimestamp(T0 / 1000, UTC)
    assert not isinstance(validate(out, now=now), Rejection)
    held = out["properties"]["traits"]
    assert len(held) == 100 and "@x.io" not in json.dumps(held)
    assert held["email"] == policy.pseudonym("email", "a@x.io")


def test_personal_traits_without_a_customer_to_seal_for_are_an_error() -> None:
    with pytest.raises(ValueError, match="customer_id"):
        sealing_customer(identify({"email": "a@x.io"}, customer_id=None), POLICY)


@pytest.mark.parametrize(("value", "text"), VALUES[:7])
def test_the_worker_keeps_the_pseudonym_the_collector_sends(value: Any, text: str) -> None:
    # An event produced straight to Kafka (raw) and one protected first end up equal.
    raw = POLICY.admit({"phone": value})
    assert (
        raw
        == POLICY.admit(protected({"phone": value}))
        == {"phone": oracle.pseudonym("phone", text)}
    )


class FakeKafka:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, value, key))


class FakeKeys:
    def __init__(self, erased: frozenset[str] = frozenset()) -> None:
        self.asked: list[str] = []
        self.erased = erased  # pseudonyms in the erasure ledger

    def unless_erased(self, customer_id: str, pseudonym: str) -> bytes | None:
        self.asked.append(customer_id)
        return None if pseudonym in self.erased else KEY

    def close(self) -> None:
        pass


def producer(key: str) -> tuple[Producer, FakeKafka, FakeKeys]:
    kafka, keys = FakeKafka(), FakeKeys()
    settings = Settings(pseudonym_key=key)
    return Producer(kafka, settings, keys), kafka, keys  # type: ignore[arg-type]


@pytest.mark.parametrize("as_bytes", [False, True])
def test_the_producer_sends_personal_traits_as_the_collector_does(as_bytes: bool) -> None:
    send, kafka, keys = producer(oracle.PSEUDONYM_KEY.decode())
    event = identify({"email": "Bob@Example.com", "phone": 4915112345678, "plan": "pro"})
    send.send(json.dumps(event).encode() if as_bytes else event)
    [(topic, value, key)] = kafka.sent
    assert topic == "cdp.customers" and key == b"C-1" and keys.asked == ["C-1"]
    assert b"Bob@" not in value and b"bob@" not in value and b"4915112345678" not in value
    traits = json.loads(value)["properties"]["traits"]
    assert traits["email"] == oracle.pseudonym("email", "Bob@Example.com")
    assert traits["phone"] == oracle.pseudonym("phone", "4915112345678")
    assert unseal(KEY, "C-1", traits["phone_sealed"]) == "4915112345678"
    assert traits["plan"] == "pro"


def test_the_producer_asks_redis_for_no_key_without_personal_traits() -> None:
    send, kafka, keys = producer("")
    send.send(identify({"plan": "pro"}))
    assert len(kafka.sent) == 1 and keys.asked == []


def test_the_producer_refuses_personal_traits_without_a_pseudonym_key() -> None:
    send, kafka, _ = producer("")
    with pytest.raises(ProducerRejected) as refused:
        send.send(identify({"phone": 4915112345678}))
    assert refused.value.rejection.reason == NO_PSEUDONYM_KEY
    assert "CDPULSE_PSEUDONYM_KEY" in str(refused.value) and kafka.sent == []


def test_an_erased_customers_personal_traits_travel_as_pseudonyms_alone() -> None:
    """No data key is made again for an erased customer: nothing is sealed, and a sealed
    copy the client sent is dropped (it could hold anything)."""
    event = identify({"email": "Bob@Example.com", "email_sealed": "v1:forged", "plan": "pro"})
    out = protect_traits(event, POLICY, None)
    traits = out["properties"]["traits"]
    assert traits == {"email": oracle.pseudonym("email", "Bob@Example.com"), "plan": "pro"}

    kafka, keys = FakeKafka(), FakeKeys(erased=frozenset({POLICY.pseudonymizer.of_id("C-1")}))
    send = Producer(kafka, Settings(pseudonym_key=oracle.PSEUDONYM_KEY.decode()), keys)  # type: ignore[arg-type]
    send.send(identify({"email": "Bob@Example.com"}))
    [(_, value, _)] = kafka.sent
    assert json.loads(value)["properties"]["traits"] == {
        "email": oracle.pseudonym("email", "Bob@Example.com")
    }
