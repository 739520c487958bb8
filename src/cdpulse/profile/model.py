"""The Profile: everything cdpulse keeps about one customer, as plain mergeable data.

Every field is kept so that the profile is a function of the *set* of events applied,
not of the order they arrived in: counts and sums add, first/last seen take min/max,
consent is last-writer-wins by event time, sessions are a union of time spans, the
cart is a list of timestamped quantity changes, windows are event-time buckets.
Two profiles therefore merge exactly (``rules.merge``), which is what stitching an
anonymous visitor into a known customer needs, and re-ordering across Kafka topics
cannot change the result. The dedupe window (``seen_ids``) is bookkeeping, not a fact
about the customer: which repeats it still catches depends on when they arrive
(``profile/dedupe.py``).

Times are epoch milliseconds (event time). Stored in Redis as MessagePack.
"""

from __future__ import annotations

import msgspec

from cdpulse.profile.activity import Activity
from cdpulse.profile.watch import Watch


class CartLine(msgspec.Struct, omit_defaults=True):
    """One product in the open cart: its quantity changes in event time."""

    category: str = ""
    price: float = 0.0
    price_at: int = -1  # event time of the add that set ``price``; the newest add wins
    # (time, delta); at most limits.CART_CHANGES_KEPT newer than the cart's horizon
    changes: list[tuple[int, int]] = msgspec.field(default_factory=list)


class CustomCount(msgspec.Struct, omit_defaults=True):
    """One custom event name's count: of all time, and per window bucket."""

    total: int = 0
    # granularity (ms) -> bucket start -> events; pruned as the window buckets are
    # (profile/custom.py)
    buckets: dict[int, dict[int, int]] = msgspec.field(default_factory=dict)


class Exposures(msgspec.Struct, array_like=True, omit_defaults=True):
    """Campaign exposures waiting for their response window to close, and the tally of
    those decided (``models/campaign/labels.py``).

    ``pending``: (exposed at, campaign key, responded 0/1), oldest first, at most
    ``limits.EXPOSURES_KEPT``. The key is the campaign or offer id's CRC-32 with its low
    bit saying which (1: an offer): 5 bytes, not the id.
    """

    pending: list[tuple[int, int, int]] = msgspec.field(default_factory=list)
    # the labels decided so far, by kind: emails opened and clicked, offers shown and
    # redeemed (within the window)
    emails: int = 0
    clicked: int = 0
    offers: int = 0
    redeemed: int = 0

    def tally(self, offer: bool) -> tuple[int, int]:
        """(exposures labelled, of them responded to) of one kind."""
        return (self.offers, self.redeemed) if offer else (self.emails, self.clicked)

    def count(self, offer: bool, label: int) -> None:
        """One more exposure of a kind labelled ``label``."""
        if offer:
            self.offers += 1
            self.redeemed += label
        else:
            self.emails += 1
            self.clicked += label


# The names fields are stored by. A profile's MessagePack holds the name of every field it
# sets: spelt out they were ~216 of a profile's ~1,900 bytes, in every profile in Redis
# (the bench's target is 4,096 bytes per profile, all keys included). Each name is kept
# for good once used: a new field gets a new name, never a retired one.
STORED_NAMES: dict[str, str] = {
    "id": "i",
    "customer_id": "c",
    "anonymous_ids": "a",
    "first_seen": "fs",
    "last_seen": "ls",
    "events": "e",
    "counts": "n",
    "channels": "ch",
    "orders": "o",
    "revenue": "r",
    "first_order_at": "fo",
    "last_order_at": "lo",
    "refunds": "rf",
    "refunded": "rd",
    "sessions_closed": "sc",
    "spans": "sp",
    "cart_cleared_at": "cc",
    "cart": "ct",
    "affinity_ref": "ar",
    "affinity": "af",
    "viewed": "v",
    "send_hours": "sh",
    "utc_offsets": "uo",
    "buckets": "b",
    "custom_counts": "cu",
    "consent": "cs",
    "identified_at": "ia",
    "traits": "t",
    "churn_days": "kd",
    "churn_first_seen": "kf",
    "churn_labelled_through": "kl",
    "churn_refused": "kx",
    "churn_risk": "kr",
    "churn_reasons": "kw",
    "churn_version": "kv",
    "churn_degraded": "kg",
    "campaign": "cp",
    "watch": "w",
    "segments": "sg",
    "offsets": "of",
    "seen_ids": "si",
    "merged_from": "mf",
    "merged_customers": "mc",
    "outbox": "ob",
    "activity": "ac",
    "persona_through": "pt",
}


class Profile(msgspec.Struct, omit_defaults=True, rename=STORED_NAMES):
    """The rolling profile of one customer (or of a not yet identified visitor)."""

    id: str
    customer_id: str | None = None
    # Not capped: erasure finds a visitor's keys (alias, data key, pseudonym index) only
    # through this list and ``merged_from`` (store/erasure.py). One entry per visitor id
    # linked by identify or merge, and a link to another customer is refused.
    anonymous_ids: list[str] = msgspec.field(default_factory=list)
    first_seen: int = 0
    last_seen: int = 0
    events: int = 0
    # keyed by event type and by channel: both fixed sets in the contract
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    channels: dict[str, int] = msgspec.field(default_factory=dict)
    # orders and money
    orders: int = 0
    revenue: float = 0.0
    first_order_at: int | None = None
    last_order_at: int | None = None
    refunds: int = 0
    refunded: float = 0.0
    # sessions: the newest spans (Rules.spans_kept) kept exactly, older ones only counted
    sessions_closed: int = 0
    spans: list[tuple[int, int]] = msgspec.field(default_factory=list)
    # the open cart: changes at or before ``cart_cleared_at`` (the last order, or the
    # horizon of the cart's cap, Rules.cart_lines_kept: profile/limits.py) are gone
    cart_cleared_at: int = -1
    cart: dict[str, CartLine] = msgspec.field(default_factory=dict)
    # category affinity, decayed: score of a category at ``affinity_ref``; the strongest
    # Rules.affinity_kept categories (profile/limits.py)
    affinity_ref: int = 0
    affinity: dict[str, float] = msgspec.field(default_factory=dict)
    # the newest view time of the Rules.viewed_kept most recently viewed products
    viewed: dict[str, int] = msgspec.field(default_factory=dict)
    # when the customer is reachable: week * 168 + local hour of the week -> weighted
    # opens, clicks, page views and orders; the newest send_hours.WEEKS_KEPT weeks
    send_hours: dict[int, int] = msgspec.field(default_factory=dict)
    # the customer's own time, per event-time week: week -> (event time, UTC offset in ms)
    # of the week's newest event whose timestamp was written with a numeric offset
    # (``+02:00``; ``Z`` and epoch numbers say nothing of where the customer is), ties by
    # the offset; the weeks send_hours keeps. What a trigger's ``deliver_at`` turns the
    # send window's local hour into UTC with (models/send_time.py)
    utc_offsets: dict[int, tuple[int, int]] = msgspec.field(default_factory=dict)
    # window buckets: granularity (ms) -> bucket start -> [events, orders, revenue];
    # buckets older than the widest window of their granularity are pruned (windows.py)
    buckets: dict[int, dict[int, list[float]]] = msgspec.field(default_factory=dict)
    # custom events per name: the registered names and at most Rules.custom_names_kept
    # others, the first in alphabetical order (profile/custom.py)
    custom_counts: dict[str, CustomCount] = msgspec.field(default_factory=dict)
    # consent per purpose (a fixed set in the contract): [time, granted]
    consent: dict[str, tuple[int, bool]] = msgspec.field(default_factory=dict)
    identified_at: int | None = None
    # allow-listed identify traits, personal ones as pseudonyms: name -> [time, value];
    # the allow-list bounds the keys
    traits: dict[str, tuple[int, str | float | int | bool | None]] = msgspec.field(
        default_factory=dict
    )
    # churn reads the customer's own identified activity only (events that carry its
    # customer_id): day start -> [events, orders, revenue], 60 days, and the first time.
    # A visitor's history merged in later must not change what was already decided.
    churn_days: dict[int, list[float]] = msgspec.field(default_factory=dict)
    churn_first_seen: int | None = None
    # the last snapshot day labelled (epoch ms), and the score at the last write
    churn_labelled_through: int = -1
    # analytics refused at this event time: the days before its day stay (nothing after
    # it is counted) until the watermark passes it and every label decidable by then is
    # decided (ChurnLabeler.decide), so the labels do not depend on whether the refusal
    # arrived before or after the customer's earlier events on other topics
    churn_refused: int | None = None
    churn_risk: float | None = None
    # replaced at each scoring by the model's few strongest reasons
    churn_reasons: list[str] = msgspec.field(default_factory=list)
    churn_version: int = 0
    # the reasons the model of that score was degraded (models/health.py); empty when its
    # health was ok or unknown: a gated trigger rule reads it (triggers/situations.py)
    churn_degraded: list[str] = msgspec.field(default_factory=list)
    # campaign response: exposures waiting for their label, and the customer's tally
    # (identified exposures only; None until the first)
    campaign: Exposures | None = None
    # trigger rules: timers, sessions and firings waiting for the watermark (triggers/;
    # each list's bound is at its field in watch.py)
    watch: Watch | None = None
    # segment memberships: segment -> generation, how often membership changed (odd:
    # member); saved with the profile, so a transition is decided exactly once. Keyed by
    # the segments defined (the segments file and RFM's): the operator's set
    segments: dict[str, int] = msgspec.field(default_factory=dict)
    # exactly-once bookkeeping: last applied offset per "topic:partition:key", the dedupe
    # window (client-side duplicates: event-time day -> packed 8-byte id hashes, see
    # profile/dedupe.py), anonymous profiles already merged in. Profiles stored before
    # the window carry ``recent_ids``: msgspec skips a field the struct does not declare.
    # None is capped: ``offsets`` holds one source per topic for each of the customer's
    # own and linked ids (a key hashes to one partition), so it grows only as
    # ``anonymous_ids`` does, and dropping one would apply a re-delivery twice;
    # ``seen_ids`` is capped by Rules.dedupe_ids; ``merged_from`` makes merges idempotent
    # and leads erasure to the merged visitors' keys, one entry per merge.
    offsets: dict[str, int] = msgspec.field(default_factory=dict)
    seen_ids: dict[int, dict[int, bytes]] = msgspec.field(default_factory=dict)  # dedupe.Window
    merged_from: list[str] = msgspec.field(default_factory=list)
    # Known customers merged into this one by an admin merge (``customers_merged``), and
    # those merged into them: their links are customer links, the one kind of link that
    # carries events with ``customer_id`` (``pipeline/identity.py``). One entry per merge.
    merged_customers: list[str] = msgspec.field(default_factory=list)
    # segment transitions (JSON) the learner's RFM sweep saved before publishing them:
    # the next save of the profile publishes them again first, and clears them, so a
    # sweep that died between its write and its publish loses none. Emptied at every
    # save: at most one sweep's transitions (leave one RFM segment, enter another)
    outbox: list[bytes] = msgspec.field(default_factory=list)
    # what the live KPIs count the customer by: active days, orders, campaign touches
    # (profile/activity.py; each list's bound is there)
    activity: Activity | None = None
    # personas: the last day with an order whose training example was decided (epoch
    # ms; models/personas_labels.py)
    persona_through: int = -1


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Profile)

# Profiles stored before ``STORED_NAMES``, under their fields' own names.
_Spelt = msgspec.defstruct(
    "SpeltProfile",
    [
        (
            f.name,
            f.type,
            msgspec.field(default_factory=f.default_factory)
            if f.default_factory is not msgspec.NODEFAULT
            else f.default,
        )
        if not f.required
        else (f.name, f.type)
        for f in msgspec.structs.fields(Profile)
    ],
    omit_defaults=True,
)
_SPELT = msgspec.msgpack.Decoder(_Spelt)


_SPELT_OUT = {short: name for name, short in STORED_NAMES.items()}


def spelt_out(profile: Profile) -> dict[str, object]:
    """Every field ``profile`` sets, as plain data under the field's own name (what a
    person reads, as an export: not the short names it is stored by)."""
    stored: dict[str, object] = msgspec.to_builtins(profile)
    return {_SPELT_OUT[short]: value for short, value in stored.items()}


def encode(profile: Profile) -> bytes:
    """The Redis value of a profile."""
    return _ENCODER.encode(profile)


def decode(blob: bytes) -> Profile:
    """A profile from its Redis value (also one stored with the fields' own names)."""
    try:
        return _DECODER.decode(blob)
    except msgspec.ValidationError:
        # Every profile has an id: without "i", it was stored with spelt-out names.
        spelt = _SPELT.decode(blob)
        return Profile(**{f: getattr(spelt, f) for f in STORED_NAMES})
