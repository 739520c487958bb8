"""The list a trigger message carries is the customer's own: the recommender knows
customers by their pseudonym (the worker's item events carry it), so the message asks by
the profile's pseudonym, and what the customer bought is left out as in every list."""

from __future__ import annotations

from cdpulse.models.reco import Recommender
from cdpulse.models.reco_stream import RecoSnapshot
from cdpulse.profile.rules import new_profile
from cdpulse.profile.watch import Pending
from cdpulse.triggers.decide import Decision
from cdpulse.triggers.engine import Expired
from cdpulse.triggers.outputs import RECOMMENDED, trigger_messages
from cdpulse.triggers.rules import TriggerConfig
from tests.unit.test_reco import T0, shop_events

CUSTOMER = "C-0"


def pseudonym(profile_id: str) -> str:
    return f"pseudonym-of-{profile_id}"


def test_a_trigger_message_recommends_by_the_customers_pseudonym() -> None:
    # The shop's events as the recommender's learner sees them: customers by pseudonym.
    recommender = Recommender()
    for event in shop_events():
        recommender.learn_one(pseudonym(event["customer_id"]), event)
    snapshot = RecoSnapshot(1, recommender, 0).served()
    bought = {"P-1", "P-2"}  # what C-0 ordered in the shop
    config = TriggerConfig.model_validate({"rules": [{"name": "cart", "kind": "cart_abandoned"}]})
    decision = Decision(f"cart:{CUSTOMER}:k", CUSTOMER, Pending("cart", "k", T0), "fired")
    expired = Expired([decision], [], {CUSTOMER: new_profile(CUSTOMER)})

    (message,) = trigger_messages(expired, config, snapshot, "", pseudonym)

    # The oracle: the customer's own list, asked of the recommender directly.
    own = snapshot.recommender.recommend(pseudonym(CUSTOMER), k=RECOMMENDED)
    assert [r.product_id for r in message.recommended] == [r.product_id for r in own]
    assert message.recommended and not bought & {r.product_id for r in message.recommended}
    # Asked by the raw id, the recommender knows no such customer: their orders would
    # come back, which is what this test guards against.
    stranger = snapshot.recommender.recommend(CUSTOMER, k=RECOMMENDED)
    assert bought & {r.product_id for r in stranger}
