"""Hostile messages drawn by hypothesis strategies over the event contract.

Each draw is a short list of raw messages: a valid event with one field made extreme or
mistyped, odd unicode (lone surrogates too, escaped or as raw bytes), an oversized field,
an identity graph (visitors and customers linked every which way, loops included), or
admin merges of known customers in any shape (``customer_merges``).
Every id a draw makes starts with ``fz-``, so hostile traffic can never touch a normal
customer's profile: the fuzz test checks those exactly, and accounts for every message.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.chaos.hostile import NASTY_TEXT

Event = dict[str, Any]
PREFIX = "fz-"
IDS = ("event_id", "customer_id", "anonymous_id")
T0 = 1_767_225_600_000  # 2026-01-01
# Stands for the draw's number in its ids until ``harvest`` numbers it: hypothesis repeats
# small draws, and each must still own ids of its own.
N = "@N@"

lone_surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
odd_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(NASTY_TEXT),
    st.builds(lambda a, b: a + b, st.text(max_size=5), lone_surrogates),
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.none(), max_size=2),
)


def encode(event: Event, ascii_only: bool) -> bytes:
    """JSON as a careless client writes it: NaN allowed, lone surrogates passed through."""
    text = json.dumps(event, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def _fresh_ids(event: Event) -> Event:
    event = json.loads(json.dumps(event))
    event["event_id"] = f"{PREFIX}e{N}"
    for name in ("customer_id", "anonymous_id"):
        if name in event:
            event[name] = f"{PREFIX}{name[0]}{N}"
    return event


@st.composite
def mistyped(draw: st.DrawFn, templates: list[Event]) -> list[bytes]:
    """One field of a valid event set to an extreme or wrongly typed value."""
    event = _fresh_ids(draw(st.sampled_from(templates)))
    target = event if draw(st.booleans()) else event.setdefault("properties", {})
    name = draw(st.sampled_from(sorted(target) or ["x"]))
    value = draw(values)
    if name in IDS and isinstance(value, str):
        value = PREFIX + value  # never a normal customer's id
    target[name] = value
    return [encode(event, draw(st.booleans()))]


@st.composite
def oversized(draw: st.DrawFn, templates: list[Event]) -> list[bytes]:
    """A field just over its limit, or a message over the worker's."""
    event = _fresh_ids(draw(st.sampled_from(templates)))
    name = draw(st.sampled_from(("event_id", "channel", "padding")))
    size = draw(st.sampled_from((128, 129, 2049, 70_000)))
    event[name] = (PREFIX + "x" * size)[:size]
    return [encode(event, True)]


@st.composite
def identity_graph(draw: st.DrawFn, templates: list[Event]) -> list[bytes]:
    """Identify events linking a few visitors and customers in any shape, and a view each."""
    people = [f"{PREFIX}g{N}-{i}" for i in range(draw(st.integers(2, 5)))]
    edges = draw(st.lists(st.tuples(st.sampled_from(people), st.sampled_from(people)), max_size=6))
    identify = next(e for e in templates if e["type"] == "identify")
    viewed = next(e for e in templates if e["type"] == "product_viewed")
    out: list[bytes] = []
    for i, (customer, visitor) in enumerate(edges):
        event = {**identify, "event_id": f"{PREFIX}e{N}-i{i}", "timestamp": T0 + i}
        event.update(customer_id=customer, anonymous_id=visitor)
        out.append(encode(event, True))
    for i, person in enumerate(people):
        event = {**viewed, "event_id": f"{PREFIX}e{N}-v{i}", "timestamp": T0 + 100 + i}
        event.pop("customer_id", None)
        out.append(encode({**event, "anonymous_id": person}, True))
    return out


@st.composite
def customer_merges(draw: st.DrawFn, templates: list[Event]) -> list[bytes]:
    """Admin merges among a few known customers in any shape (into itself, chains,
    cycles, ids no event made a customer), after a view of each of some of them."""
    people = [f"{PREFIX}k{N}-{i}" for i in range(draw(st.integers(2, 4)))]
    pairs = st.tuples(st.sampled_from(people), st.sampled_from(people))
    edges = draw(st.lists(pairs, min_size=1, max_size=5))
    viewed = next(e for e in templates if e["type"] == "product_viewed")
    out: list[bytes] = []
    for i, person in enumerate(people):
        if draw(st.integers(0, 3)):  # mostly known: a customer event of its own first
            event = {**viewed, "event_id": f"{PREFIX}e{N}-k{i}", "timestamp": T0 + i}
            event.pop("anonymous_id", None)
            out.append(encode({**event, "customer_id": person}, True))
    for i, (survivor, merged) in enumerate(edges):
        merge = {
            "event_id": f"{PREFIX}e{N}-m{i}",
            "type": "customers_merged",
            "timestamp": T0 + 100 + i,
            "customer_id": survivor,
            "channel": "partner",
            "properties": {"merged_id": merged, "requested_by": f"{PREFIX}admin"},
        }
        out.append(encode(merge, True))
    return out


def hostile(templates: list[Event]) -> st.SearchStrategy[list[bytes]]:
    """Any of the kinds above; mostly one broken event, sometimes a graph."""
    one = mistyped(templates)
    return st.one_of(
        one, one, one, oversized(templates), identity_graph(templates), customer_merges(templates)
    )


def harvest(templates: list[Event], messages: int, at: int) -> list[bytes]:
    """At least ``messages`` hostile messages, drawn by hypothesis from seed ``at``."""
    out: list[bytes] = []

    def collect(drawn: list[bytes]) -> None:
        number = str(len(out)).encode()
        out.extend(raw.replace(N.encode(), number) for raw in drawn)

    rounds = 0
    while len(out) < messages:
        run = settings(
            max_examples=max(1, (messages - len(out)) // 2),
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(seed(at + rounds)(given(hostile(templates))(collect)))
        run()
        rounds += 1
    return out
