"""Fuzzing through the real engine: hypothesis-drawn hostile messages (``fuzz.py``) mixed
into a simulated shop, sent to Kafka and through the collector, some of both again later.

Every message must be processed or dead-lettered with the contract's reason, the worker
must commit to the end of its topics, and every normal customer's profile must equal the
oracle's. Hostile profiles (ids ``fz-…``) are accounted for, and their identity graphs
held to the identity rules: which link of a visitor wins may depend on the order its
partitions are read in, what the rules refuse may not.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime

from cdpulse.contract.topics import STREAM_OF_TYPE
from cdpulse.pipeline.identity import MERGE_RULES
from cdpulse.simulate.shop import Shop
from tests.chaos.conftest import scaled
from tests.chaos.fuzz import PREFIX, harvest
from tests.chaos.observe import metric
from tests.chaos.state import read_state, summary
from tests.chaos.stream import Outgoing
from tests.chaos.test_hostile_input import STREAMS, parses, rejections, through_the_engine
from tests.integration.conftest import Env, consume_all
from tests.oracle import differences, expected, millis, valid_events

MERGE = b'"customers_merged"'


def test_fuzzed_messages_are_accounted_for_and_normal_profiles_exact(env: Env) -> None:
    rng = random.Random(41)
    shop = list(Shop(customers=scaled(40, 300), days=10, seed=41).events())
    templates = list({e["type"]: e for e in shop}.values())
    fuzzed = harvest(templates, scaled(300, 10_000), at=41)

    normal = [
        Outgoing(
            STREAM_OF_TYPE[e["type"]],
            (e.get("customer_id") or e["anonymous_id"]).encode(),
            json.dumps(e).encode(),
        )
        for e in shop
    ]
    # Merges reach the worker only on Kafka: the collector refuses them (tests/integration).
    to_http = {
        i for i, raw in enumerate(fuzzed) if rng.random() < 0.2 and parses(raw) and MERGE not in raw
    }
    by_http = [fuzzed[i] for i in sorted(to_http)]
    hostile = [
        Outgoing(rng.choice(STREAMS), rng.choice((None, b"", b"fz-key", raw[:16])), raw)
        for i, raw in enumerate(fuzzed)
        if i not in to_http
    ]
    # a random merge keeps each list's own order, so a customer's events stay in order
    pending = [iter(normal), iter(hostile)]
    sizes = [len(normal), len(hostile)]
    messages: list[Outgoing] = []
    while any(sizes):
        side = 0 if rng.random() * sum(sizes) < sizes[0] else 1
        messages.append(next(pending[side]))
        sizes[side] -= 1
    messages += rng.sample(normal, len(normal) // 50) + rng.sample(hostile, len(hostile) // 50)
    requests = [b"[" + b",".join(by_http[i : i + 20]) + b"]" for i in range(0, len(by_http), 20)]
    requests += requests[: len(requests) // 10]  # the collector gets repeats too

    _, api, posted = through_the_engine(env, messages, requests)
    assert metric(api, "cdpulse_events_rejected_total") == posted.reasons.total()
    assert posted.reasons.total() + len(posted.accepted) == posted.events
    wanted = rejections(messages) + posted.reasons
    letters = [
        json.loads(r.value)
        for r in consume_all(env.settings, env.settings.topic_dead_letter, wanted.total())
    ]
    refused = [d for d in letters if d["reason"] == "identity_refused"]
    merges_refused = [d for d in letters if d["reason"] == "merge_refused"]
    letters = [d for d in letters if d not in merges_refused]
    assert Counter(d["reason"] for d in letters if d not in refused) == wanted
    assert not posted.errors, f"{len(posted.errors)} requests failed: {posted.errors[:5]}"

    # Identity graphs follow the rules (README: Identity rules), whatever order their
    # partitions were read in: only an identify naming a known customer (an id some event
    # uses as customer_id) as its anonymous id is refused, and in the end no known
    # customer is linked and no link leads to a linked id.
    everything = valid_events([m.value for m in messages] + posted.accepted, now=datetime.now(UTC))
    customers = {e["customer_id"] for e in everything if e.get("customer_id")}
    refusable = {
        e["event_id"]
        for e in everything
        if e["type"] == "identify" and e.get("anonymous_id") in customers - {e["customer_id"]}
    }
    assert refused, "no identify was refused: the identity rules went untested"
    assert {d["event_id"] for d in refused} <= refusable
    assert all("known_customer" in d["detail"] for d in refused)
    state = read_state(env.redis, env.name)
    linked = set(state.aliases) & customers
    assert linked <= set(state.merged), "a known customer is linked as a visitor"
    assert not set(state.aliases.values()) & set(state.aliases), "a link chains"
    assert not set(state.aliases) & set(state.profiles), "a linked id has a profile"

    # Admin merges (README: Identity rules): refused ones are dead-lettered naming a rule,
    # each merged customer's link and marker name one survivor, which lists it.
    merges = {e["event_id"] for e in everything if e["type"] == "customers_merged"}
    assert merges_refused, "no merge was refused: the merge rules went untested"
    assert state.merged, "no merge was applied: the admin merge went untested"
    assert {d["event_id"] for d in merges_refused} <= merges
    assert all(any(f"({r})" in d["detail"] for r in MERGE_RULES) for d in merges_refused)
    for gone, survivor in state.merged.items():
        assert state.aliases[gone] == survivor, f"{gone}: its link and marker disagree"
        assert gone in state.profiles[survivor].merged_customers, f"{survivor} lacks {gone}"

    # The oracle's truth is the normal messages', at the watermark every valid message
    # moved (which visitor link of a hostile graph wins depends on the order read).
    now = datetime.now(UTC)
    normal_ones = {id(m) for m in normal}
    truth = expected(
        [m.value for m in messages if id(m) in normal_ones],
        now=now,
        as_of=max(millis(e["timestamp"]) for e in everything),
    )
    assert state.as_of == truth.as_of
    mine = sorted(i for i in truth.profiles if not i.startswith(PREFIX))
    assert len(mine) >= len({e.get("customer_id") for e in shop}) // 2
    assert sorted(i for i in state.profiles if not i.startswith(PREFIX)) == mine
    normal_aliases = {a: c for a, c in truth.aliases.items() if not a.startswith(PREFIX)}
    assert {a: c for a, c in state.aliases.items() if not a.startswith(PREFIX)} == normal_aliases
    documents = state.documents()
    problems = [p for i in mine for p in differences(documents[i], truth.profiles[i])]
    assert not problems, "normal profiles differ from the oracle:\n  " + summary(problems)
