"""The ground truth of customer profiles: every field computed straight from its definition.

Written apart from the engine on purpose: nothing here comes from ``cdpulse.profile``,
``cdpulse.ingest`` or ``cdpulse.store``. The engine keeps mergeable summaries updated one
event at a time; the oracle sees all of a customer's events at once, sorts them by time
and computes each field from the specification in one linear pass. When the two agree
on a stream, the engine was exact on it. Only ``cdpulse.contract.validation`` is shared,
to agree on which raw events are valid at all.

Identity follows the rules (``refuse_links``): an id used as ``customer_id`` is never a
linked visitor; an admin merge (``customer_merges``) merges one known customer into
another, and then owns the merged customer's events, before and after it, and its links.
Where the specification is silent the oracle decides, and says so: an identify naming
the customer's own id as its anonymous id lists nothing in ``anonymous_ids`` (it links
nothing); among adds of one product at the same instant, the highest (price, category)
sets the cart price, so that the cart depends on the set of events only.

One field depends on processing order, by design: withholding analytics discards what the
profile held (README: Consent), so a later grant counts only the events processed after
it (``counted``); the identity, consent and traits a minimised profile keeps come from
all of them.

>>> from datetime import UTC
>>> t = 1_767_225_600_000  # 2026-01-01T00:00:00Z
>>> view = {"event_id": "e1", "type": "product_viewed", "timestamp": t,
...         "anonymous_id": "a-1", "channel": "web",
...         "properties": {"product_id": "P-1", "category": "shoes", "price": 59.0}}
>>> login = {"event_id": "e2", "type": "identify", "timestamp": "2026-01-01T01:00:00+01:00",
...          "customer_id": "C-1", "anonymous_id": "a-1", "channel": "web"}
>>> truth = expected([view, login], now=datetime(2026, 11, 26, tzinfo=UTC))
>>> truth.aliases, sorted(truth.profiles)
({'a-1': 'C-1'}, ['C-1'])
>>> p = truth.get("a-1")
>>> p["id"], p["events"], p["sessions"], p["identified_at"], p["category_affinity"]
('C-1', 2, 1, '2026-01-01T00:00:00.000Z', {'shoes': 1.0})
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any

from cdpulse.contract.custom_schemas import CustomSchemas
from cdpulse.contract.topics import STREAM_OF_TYPE
from cdpulse.contract.validation import Rejection, decode, validate

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

SESSION_GAP = 30 * MINUTE
DEDUPE_WINDOW_DAYS = 7
SESSION_TYPES = frozenset(
    {
        "page_viewed",
        "product_viewed",
        "search_performed",
        "product_added",
        "product_removed",
        "checkout_started",
        "custom",
    }
)
AFFINITY_HALF_LIFE = 14 * DAY
RECENTLY_VIEWED = 20
PURPOSES = ("analytics", "personalization", "marketing")
# Traits (README: Privacy and security): only these are kept; the personal ones as
# "hmac:" + HMAC-SHA256(key, name NUL normalised value). The key the tests configure.
PSEUDONYM_KEY = b"cdpulse-tests-pseudonym-key"
ALLOWED_TRAITS = frozenset({"email", "phone", "country", "language", "plan"})
PERSONAL_TRAITS = frozenset({"email", "phone"})
# Custom event names a profile counts besides the registered ones: the first in
# alphabetical order (CDPULSE_CUSTOM_NAMES_KEPT's default).
CUSTOM_NAMES_KEPT = 32
# (name, width, granularity)
WINDOWS = (
    ("1h", HOUR, 5 * MINUTE),
    ("24h", DAY, HOUR),
    ("7d", 7 * DAY, DAY),
    ("30d", 30 * DAY, DAY),
)

_EPOCH_DAY = date(1970, 1, 1).toordinal()
_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))$"
)

Event = Mapping[str, Any]
Document = dict[str, Any]


# --- time ---------------------------------------------------------------------------------


def millis(timestamp: Any) -> int:
    """Epoch milliseconds of a contract timestamp: epoch ms, or RFC 3339 text with an offset.

    >>> millis("1970-01-01T01:00:00.0015+01:00"), millis(2.5), millis(7)
    (2, 3, 7)
    """
    if isinstance(timestamp, bool):
        raise TypeError("oracle: a boolean is not a timestamp")
    if isinstance(timestamp, int):
        return timestamp
    if isinstance(timestamp, float):
        return math.floor(timestamp + 0.5)
    match = _RFC3339.match(timestamp)
    if match is None:
        raise ValueError(f"oracle: timestamp {timestamp!r} is not in a form the oracle reads")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    # sub-microsecond digits are dropped, like the contract's parser does
    micros = int((match.group(7) or "").ljust(6, "0")[:6])
    offset = 0
    if match.group(9):
        sign = 1 if match.group(9) == "+" else -1
        offset = sign * (int(match.group(10)) * HOUR + int(match.group(11)) * MINUTE)
    days = date(year, month, day).toordinal() - _EPOCH_DAY
    whole = days * DAY + hour * HOUR + minute * MINUTE + second * 1000 - offset
    return whole + (micros + 500) // 1000


def rfc3339(ms: int | None) -> str | None:
    """RFC 3339 text of epoch milliseconds: UTC, three fraction digits, ``Z``.

    >>> rfc3339(1_767_225_600_001)
    '2026-01-01T00:00:00.001Z'
    """
    if ms is None:
        return None
    days, rest = divmod(ms, DAY)
    hours, rest = divmod(rest, HOUR)
    minutes, rest = divmod(rest, MINUTE)
    seconds, fraction = divmod(rest, 1000)
    day = date.fromordinal(_EPOCH_DAY + days).isoformat()
    return f"{day}T{hours:02d}:{minutes:02d}:{seconds:02d}.{fraction:03d}Z"


# --- the truth of a whole stream ----------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """Every expected profile of a stream, the anonymous ids linked to customers, as_of."""

    profiles: dict[str, Document]
    aliases: dict[str, str]
    as_of: int

    def get(self, profile_id: str) -> Document | None:
        """The profile served for ``profile_id``: a linked anonymous id serves its customer's."""
        return self.profiles.get(self.aliases.get(profile_id, profile_id))


def valid_events(
    items: Iterable[bytes | Event], *, now: datetime, schemas: CustomSchemas | None = None
) -> list[Event]:
    """The valid events among raw message values or event dicts, in their order; a custom
    event must follow its schema in ``schemas`` when one is registered."""
    out: list[Event] = []
    for item in items:
        if isinstance(item, bytes):
            if isinstance(decode(item, now=now, schemas=schemas), Rejection):
                continue
            out.append(json.loads(item))
        elif not isinstance(validate(dict(item), now=now, schemas=schemas), Rejection):
            out.append(item)
    return out


def expected(
    items: Iterable[bytes | Event],
    *,
    now: datetime,
    as_of: int | None = None,
    schemas: CustomSchemas | None = None,
) -> Truth:
    """The truth of a stream given in processing order (raw values or event dicts).

    ``as_of`` defaults to the newest event time of the stream: the engine's watermark.
    ``schemas``: the registered custom event schemas (CDPULSE_CUSTOM_EVENT_SCHEMAS).
    """
    every = valid_events(items, now=now, schemas=schemas)
    registered = frozenset(schemas.names) if schemas else frozenset()
    events, aliases, merged_into, owned = resolved(every)
    # An erasure request removes its customer and every id linked to it, for good.
    erased = {
        aliases.get(owner, owner)
        for event in events
        if event["type"] == "erasure_requested"
        for owner in [event.get("customer_id") or event["anonymous_id"]]
    }
    for owner in erased:
        owned.pop(owner, None)
    aliases = {a: c for a, c in aliases.items() if c not in erased and a not in erased}

    # An admin merge moves the watermark too: it is an event of its partition.
    newest = max((millis(e["timestamp"]) for e in [*events, *_merges(every)]), default=0)
    reference = newest if as_of is None else as_of
    profiles = {
        owner: profile(
            owner,
            mine,
            reference,
            counted(mine),
            merged=[m for m, s in merged_into.items() if s == owner],
            registered=registered,
        )
        for owner, mine in owned.items()
    }
    return Truth(profiles, aliases, reference)


def resolved(
    every: list[Event],
) -> tuple[list[Event], dict[str, str], dict[str, str], dict[str, list[Event]]]:
    """Who is who in valid events given in processing order: the events each profile
    applies (``distinct``), every id's link to its owner, the admin merges (merged ->
    survivor) and each owner's events."""
    valid, merged_into = customer_merges(refuse_links(every))
    events = distinct(valid, owners(links(valid), merged_into))
    aliases = owners(links(events), merged_into)
    owned: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        owner: str = event.get("customer_id") or event["anonymous_id"]
        owned[aliases.get(owner, owner)].append(event)
    return events, aliases, merged_into, owned


MERGE_TYPE = "customers_merged"


def _merges(events: list[Event]) -> list[Event]:
    return [e for e in events if e["type"] == MERGE_TYPE]


def customer_merges(events: list[Event]) -> tuple[list[Event], dict[str, str]]:
    """The events without the admin merges (an operation, not the customer's behaviour),
    and merged customer -> survivor, decided in processing order (README: Identity
    rules). A merge is refused when ``merged_id`` is the survivor (self_merge), was not
    used as ``customer_id`` by an event processed before it (unknown_customer), is merged
    into someone already (chain), or when the survivor is merged away itself (into
    ``merged_id``: cycle; else survivor_merged). A merge made already changes nothing.
    Whatever was merged into the merged customer follows it: one hop, always.
    """
    merged_into: dict[str, str] = {}
    seen: set[str] = set()  # ids used as customer_id so far
    out: list[Event] = []
    for event in events:
        if event["type"] != MERGE_TYPE:
            if event.get("customer_id") is not None:
                seen.add(event["customer_id"])
            out.append(event)
            continue
        survivor, merged = event["customer_id"], event["properties"]["merged_id"]
        if merge_refusal(survivor, merged, merged_into, seen) is None:
            for other, into in list(merged_into.items()):
                if into == merged:
                    merged_into[other] = survivor
            merged_into[merged] = survivor
    return out, merged_into


def merge_refusal(
    survivor: str, merged: str, merged_into: Mapping[str, str], seen: set[str]
) -> str | None:
    """The rule an admin merge breaks, or None (README: Identity rules)."""
    if merged == survivor:
        return "self_merge"
    if merged_into.get(merged) == survivor:
        return None
    if survivor in merged_into:
        return "cycle" if merged_into[survivor] == merged else "survivor_merged"
    if merged in merged_into:
        return "chain"
    if merged not in seen:
        return "unknown_customer"
    return None


def owners(aliases: Mapping[str, str], merged_into: Mapping[str, str]) -> dict[str, str]:
    """Every id's link to the profile that owns it: visitor links, then each customer's
    own link if it was merged away (a merged customer's visitors follow it)."""
    out = {a: merged_into.get(c, c) for a, c in aliases.items()}
    out.update(merged_into)
    return out


def counted(events: Iterable[Event]) -> list[Event]:
    """The events a profile still counts, of its events in processing order: whenever the
    consent known so far withholds analytics, everything processed until then (that event
    too) is discarded. A later grant (newer by event time) counts only what follows it.

    The owner is the final one, as in ``distinct``: a visitor's events are judged by its
    customer's consent from the start.
    """
    analytics: tuple[int, bool] | None = None
    out: list[Event] = []
    for event in events:
        out.append(event)
        analytics = newest_analytics(event, analytics)
        if analytics is not None and not analytics[1]:
            out = []
    return out


def newest_analytics(event: Event, analytics: tuple[int, bool] | None) -> tuple[int, bool] | None:
    """The analytics consent known after ``event``, given ``analytics`` before it: the
    newest by event time, a refusal winning a tie."""
    if event["type"] != "consent_updated":
        return analytics
    granted = event["properties"]["purposes"].get("analytics")
    t = millis(event["timestamp"])
    if granted is not None and (
        analytics is None or t > analytics[0] or (t == analytics[0] and not granted)
    ):
        return (t, granted)
    return analytics


def refuse_links(events: list[Event]) -> list[Event]:
    """The events with every identify whose anonymous id some event of the stream uses as
    ``customer_id`` (before or after it) stripped of that anonymous id: the link is
    refused and the rest of the identify applies to its customer (README: Identity
    rules). Exact for streams where no id is used as customer_id only after a link to it
    was processed (the engine then keeps that link's past, and unlinks it)."""
    customers = {e["customer_id"] for e in events if e.get("customer_id") is not None}
    out = []
    for event in events:
        anonymous = event.get("anonymous_id")
        if (
            event["type"] == "identify"
            and anonymous in customers
            and anonymous != event.get("customer_id")
        ):
            event = {k: v for k, v in event.items() if k != "anonymous_id"}
        out.append(event)
    return out


def links(events: Iterable[Event]) -> dict[str, str]:
    """Anonymous id -> customer id, in processing order: the first link of an id wins."""
    aliases: dict[str, str] = {}
    for event in events:
        customer: str = event.get("customer_id") or ""
        anonymous: str | None = event.get("anonymous_id")
        if event["type"] == "identify" and anonymous is not None and anonymous != customer:
            aliases.setdefault(anonymous, customer)
    return aliases


def distinct(events: Iterable[Event], aliases: Mapping[str, str]) -> list[Event]:
    """The events a profile applies, in processing order: a repeated ``event_id`` of one
    owner is dropped while its first copy's day is at most ``DEDUPE_WINDOW_DAYS`` before
    the newest day of the first copy's source when the repeat arrives; else applied
    again. A source is what a message travels on: its event type's topic and its key
    (which picks the partition); a repeat, having its first copy's content, travels on
    the same one.

    The owner is the final one (a visitor already counts as its customer). No owner here
    comes near the cap on ids kept (``CDPULSE_DEDUPE_IDS_KEPT``).
    """
    newest: dict[tuple[str, str], int] = {}  # source -> newest day kept from it
    first: dict[tuple[str, str], tuple[tuple[str, str], int]] = {}  # (owner, id) -> kept
    out: list[Event] = []
    for event in events:
        key: str = event.get("customer_id") or event["anonymous_id"]
        owner = aliases.get(key, key)
        source = (STREAM_OF_TYPE[event["type"]], key)
        day = millis(event["timestamp"]) // DAY
        kept = first.get((owner, event["event_id"]))
        if kept is not None and kept[1] >= newest[kept[0]] - DEDUPE_WINDOW_DAYS:
            continue
        top = newest.get(source)
        if top is None or day >= top - DEDUPE_WINDOW_DAYS:
            newest[source] = day if top is None else max(top, day)
            first[(owner, event["event_id"])] = (source, day)
        out.append(event)
    return out


# --- one profile --------------------------------------------------------------------------


def profile(
    profile_id: str,
    events: Iterable[Event],
    as_of: int,
    counts: Iterable[Event] | None = None,
    merged: Iterable[str] = (),
    registered: frozenset[str] = frozenset(),
    custom_kept: int = CUSTOM_NAMES_KEPT,
) -> Document:
    """The rendered profile of ``profile_id`` from all the (distinct) events it owns; the
    behaviour from those it ``counts`` (``counted``: all of them unless given).
    ``merged``: the customers an admin merge merged into it (their events are among
    ``events``; they are listed with its anonymous ids). ``registered``: the custom
    event names with a schema, counted whatever ``custom_kept`` says."""
    merged = set(merged)
    every = sorted(((millis(e["timestamp"]), e) for e in events), key=lambda te: te[0])
    if not every:
        raise ValueError(f"oracle: profile {profile_id} has no events")
    as_of = max(as_of, every[-1][0])
    if counts is None:
        timed = every
    else:
        timed = sorted(((millis(e["timestamp"]), e) for e in counts), key=lambda te: te[0])
    times = [t for t, _ in timed]

    customers = {e["customer_id"] for _, e in every if e.get("customer_id") is not None}
    customers -= merged
    if len(customers) > 1:
        raise ValueError(f"oracle: profile {profile_id} owns events of customers {customers}")
    if merged:
        customers = {profile_id}  # the survivor of an admin merge
    identifies = [(t, e) for t, e in every if e["type"] == "identify"]
    # every linked (merged) anonymous id is named by one of the customer's identify events
    anonymous_ids = sorted(
        {
            e["anonymous_id"]
            for _, e in identifies
            if e.get("anonymous_id") is not None and e["anonymous_id"] != profile_id
        }
        | merged
    )

    orders = [(t, e["properties"]) for t, e in timed if e["type"] == "order_completed"]
    refunds = [e["properties"]["amount"] for _, e in timed if e["type"] == "order_refunded"]
    revenue = math.fsum(p["revenue"] for _, p in orders)
    refunded = math.fsum(refunds)
    last_order = orders[-1][0] if orders else None

    document: Document = {
        "id": profile_id,
        "customer_id": next(iter(customers), None),
        "anonymous_ids": anonymous_ids,
        "as_of": rfc3339(as_of),
        "first_seen": rfc3339(times[0] if times else None),
        "last_seen": rfc3339(times[-1] if times else None),
        "events": len(timed),
        "counts": _tally(e["type"] for _, e in timed),
        "channels": _tally(e["channel"] for _, e in timed),
        "sessions": _sessions([t for t, e in timed if e["type"] in SESSION_TYPES]),
        "orders": len(orders),
        "revenue": round(revenue, 2),
        "average_order_value": round(revenue / len(orders), 2) if orders else 0.0,
        "first_order_at": rfc3339(orders[0][0]) if orders else None,
        "last_order_at": rfc3339(last_order),
        "refunds": {"count": len(refunds), "amount": round(refunded, 2)},
        "cart": _cart(timed),
        "category_affinity": _affinity(timed, as_of),
        "recently_viewed": _recently_viewed(timed),
        "windows": _windows(timed, as_of),
        "send_hours": _send_hours(timed, as_of),
        "custom_counts": _custom_counts(timed, as_of, registered, custom_kept),
        "rfm": {
            "recency_days": None if last_order is None else round((as_of - last_order) / DAY, 4),
            "frequency": len(orders),
            "monetary": round(revenue - refunded, 2),
        },
        "consent": _consent(every),
        "identified_at": rfc3339(identifies[0][0]) if identifies else None,
        "traits": _traits(identifies),
    }
    if document["consent"]["analytics"] is False:
        return _minimal(document, _custom_counts([], as_of, registered, custom_kept))
    return document


def _minimal(document: Document, custom_counts: Document) -> Document:
    """A customer who withheld analytics: only identity, consent and traits are shown."""
    kept = ("id", "customer_id", "anonymous_ids", "as_of", "consent", "identified_at", "traits")
    windows = {name: {"events": 0, "orders": 0, "revenue": 0.0} for name, _, _ in WINDOWS}
    return {
        **{name: document[name] for name in kept},
        "first_seen": None,
        "last_seen": None,
        "events": 0,
        "counts": {},
        "channels": {},
        "sessions": 0,
        "orders": 0,
        "revenue": 0.0,
        "average_order_value": 0.0,
        "first_order_at": None,
        "last_order_at": None,
        "refunds": {"count": 0, "amount": 0.0},
        "cart": {"items": [], "value": 0.0, "since": None},
        "category_affinity": {},
        "recently_viewed": [],
        "windows": windows,
        "send_hours": {},
        "custom_counts": custom_counts,
        "rfm": {"recency_days": None, "frequency": 0, "monetary": 0.0},
    }


def canonical(value: Any) -> str:
    """The text a personal value of any JSON type is pseudonymised as (README: Privacy and
    security): text itself; otherwise its compact JSON with sorted keys, an integral number
    without a fraction."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == math.floor(value):
        return f"{value:.0f}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def is_pseudonym(value: Any) -> bool:
    """``hmac:`` and 64 lower-case hex digits, and nothing else."""
    return isinstance(value, str) and re.fullmatch(r"hmac:[0-9a-f]{64}", value) is not None


def pseudonym(name: str, value: Any) -> str:
    """The pseudonym of a personal trait value of any JSON type, from its definition."""
    text = canonical(value).strip()
    if name == "email":
        text = text.lower()
    elif name == "phone":
        text = "".join(c for c in text if c.isdigit() or c == "+")
    digest = hmac.new(PSEUDONYM_KEY, f"{name}\x00{text}".encode(), hashlib.sha256)
    return "hmac:" + digest.hexdigest()


def pseudonym_id(profile_id: str) -> str:
    """The pseudonym of a customer or anonymous id, as output topics carry it."""
    digest = hmac.new(PSEUDONYM_KEY, f"id\x00{profile_id}".encode(), hashlib.sha256)
    return "hmac:" + digest.hexdigest()


def _traits(identifies: list[tuple[int, Event]]) -> dict[str, Any]:
    """Allowed traits, the newest value by event time (a tie: the larger repr)."""
    latest: dict[str, tuple[int, str, Any]] = {}
    for t, e in identifies:
        for name, value in e.get("properties", {}).get("traits", {}).items():
            if name not in ALLOWED_TRAITS:
                continue
            if name in PERSONAL_TRAITS and value is not None and not is_pseudonym(value):
                value = pseudonym(name, value)
            candidate = (t, repr(value), value)
            if name not in latest or candidate[:2] > latest[name][:2]:
                latest[name] = candidate
    return {name: latest[name][2] for name in sorted(latest)}


def _tally(names: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for name in names:
        counts[name] += 1
    return dict(sorted(counts.items()))


def _sessions(times: list[int]) -> int:
    """Visits: runs of session events with no gap longer than the session gap."""
    if not times:
        return 0
    return 1 + sum(1 for a, b in pairwise(times) if b - a > SESSION_GAP)


def _cart(timed: list[tuple[int, Event]]) -> Document:
    """The cart opened after the latest order: products with a positive net quantity.

    Price and category come from the product's newest add; among adds at one instant,
    from the highest (price, category), so that the cart depends on the set of events only.
    """
    orders = [t for t, e in timed if e["type"] == "order_completed"]
    cleared = orders[-1] if orders else -math.inf
    net: dict[str, int] = defaultdict(int)
    first_add: dict[str, int] = {}
    newest_add: dict[str, tuple[int, float, str]] = {}  # (time, price, category)
    for t, e in timed:
        if e["type"] not in ("product_added", "product_removed"):
            continue
        props = e["properties"]
        product = props["product_id"]
        if e["type"] == "product_added":
            offer = (t, props["price"], props["category"])
            newest_add[product] = max(offer, newest_add.get(product, offer))
        if t <= cleared:
            continue
        if e["type"] == "product_added":
            net[product] += props.get("quantity", 1)
            first_add.setdefault(product, t)
        else:
            net[product] -= props.get("quantity", 1)
    items: list[Document] = [
        {
            "product_id": product,
            "category": newest_add[product][2],
            "price": newest_add[product][1],
            "quantity": net[product],
        }
        for product in sorted(net)
        if net[product] > 0 and product in newest_add
    ]
    since = min((first_add[i["product_id"]] for i in items), default=None)
    return {
        "items": items,
        "value": round(math.fsum(i["price"] * i["quantity"] for i in items), 2),
        "since": rfc3339(since),
    }


def _affinity(timed: list[tuple[int, Event]], as_of: int) -> dict[str, float]:
    """Views (1), adds (3) and purchased line items (5) per category, halved every 14 days."""
    weights: dict[str, list[float]] = defaultdict(list)
    for t, e in timed:
        decay = 0.5 ** ((as_of - t) / AFFINITY_HALF_LIFE)
        props = e.get("properties", {})
        if e["type"] == "product_viewed":
            weights[props["category"]].append(1.0 * decay)
        elif e["type"] == "product_added":
            weights[props["category"]].append(3.0 * decay)
        elif e["type"] == "order_completed":
            for item in props["items"]:
                weights[item["category"]].append(5.0 * decay)
    scores = {category: round(math.fsum(w), 6) for category, w in weights.items()}
    return dict(sorted(scores.items(), key=lambda cs: (-cs[1], cs[0])))


def _recently_viewed(timed: list[tuple[int, Event]]) -> list[str]:
    newest: dict[str, int] = {}
    for t, e in timed:
        if e["type"] == "product_viewed":
            newest[e["properties"]["product_id"]] = t  # time order: ends at the newest view
    top = sorted(newest.items(), key=lambda pt: (pt[1], pt[0]), reverse=True)[:RECENTLY_VIEWED]
    return [p for p, _ in sorted(top, key=lambda pt: (-pt[1], pt[0]))]


def _windows(timed: list[tuple[int, Event]], as_of: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, width, granularity in WINDOWS:
        lo = (as_of // granularity) * granularity - width + granularity
        inside = [e for t, e in timed if lo <= (t // granularity) * granularity <= as_of]
        orders = [e["properties"]["revenue"] for e in inside if e["type"] == "order_completed"]
        out[name] = {
            "events": len(inside),
            "orders": len(orders),
            "revenue": round(math.fsum(orders), 2),
        }
    return out


# Send time (README: Send time): weighted opens, clicks, page views and orders per local
# hour of the week, in event-time weeks; the 8 weeks up to the newest event are kept and
# a week w weeks before as_of's counts 8 - w times.
SEND_WEIGHTS = {"email_opened": 3, "email_clicked": 3, "order_completed": 2, "page_viewed": 1}
SEND_WEEKS = 8
WEEK = 7 * DAY
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _send_hours(timed: list[tuple[int, Event]], as_of: int) -> dict[str, int]:
    if not timed:
        return {}
    newest_week = timed[-1][0] // WEEK
    totals: dict[int, int] = defaultdict(int)
    for t, e in timed:
        weight = SEND_WEIGHTS.get(e["type"])
        age = newest_week - t // WEEK
        decay = SEND_WEEKS - (as_of // WEEK - t // WEEK)
        if weight is None or age >= SEND_WEEKS or decay <= 0:
            continue
        local = datetime.fromtimestamp(t / 1000, UTC) + timedelta(milliseconds=_offset(e))
        totals[local.weekday() * 24 + local.hour] += weight * decay
    return {f"{WEEKDAYS[h // 24]} {h % 24:02d}h": totals[h] for h in sorted(totals) if totals[h]}


def _offset(event: Event) -> int:
    """The UTC offset (ms) the event's timestamp was written with (0: Z or a number)."""
    timestamp = event["timestamp"]
    match = _RFC3339.match(timestamp) if isinstance(timestamp, str) else None
    if match is None or not match.group(9):
        return 0
    sign = 1 if match.group(9) == "+" else -1
    return sign * (int(match.group(10)) * HOUR + int(match.group(11)) * MINUTE)


def _custom_counts(
    timed: list[tuple[int, Event]], as_of: int, registered: frozenset[str], kept: int
) -> Document:
    """Per custom event name, its events of all time and in each window at ``as_of``: every
    registered name (sent or not), and of the others the ``kept`` first alphabetically."""
    sent: dict[str, list[int]] = defaultdict(list)
    for t, e in timed:
        if e["type"] == "custom":
            sent[e["name"]].append(t)
    others = sorted(name for name in sent if name not in registered)[:kept]
    out: Document = {}
    for name in sorted({*registered, *others}):
        times = sent.get(name, [])
        out[name] = {"total": len(times)}
        for window, width, granularity in WINDOWS:
            lo = (as_of // granularity) * granularity - width + granularity
            inside = [t for t in times if lo <= (t // granularity) * granularity <= as_of]
            out[name][window] = len(inside)
    return out


def _consent(timed: list[tuple[int, Event]]) -> dict[str, bool | None]:
    """Per purpose, the newest update that set it; a refusal wins a tie."""
    latest: dict[str, tuple[int, bool]] = {}
    for t, e in timed:
        if e["type"] != "consent_updated":
            continue
        for purpose, granted in e["properties"]["purposes"].items():
            if purpose not in PURPOSES or granted is None:
                continue
            current = latest.get(purpose)
            if current is None or t > current[0] or (t == current[0] and not granted):
                latest[purpose] = (t, granted)
    return {purpose: latest[purpose][1] if purpose in latest else None for purpose in PURPOSES}


# --- comparing ----------------------------------------------------------------------------


MODEL_FIELDS = frozenset({"churn", "clv", "next_purchase", "best_send_window", "persona"})


def differences(actual: Document, wanted: Document) -> list[str]:
    """Every field where a rendered profile differs from the truth, one line each.

    Exact everywhere except: ``anonymous_ids`` compare as sets; affinity scores within
    1e-6 (relative) since decayed sums of floats depend on the order of additions; the
    average order value within a cent, since half-cent quotients round either way by
    float noise.
    """
    out: list[str] = []
    # Model outputs (scores and their reasons) are not the oracle's: tests of the models
    # check them. Everything else must match.
    actual = {k: v for k, v in actual.items() if k not in MODEL_FIELDS}
    if set(actual) != set(wanted):
        out.append(f"fields: got {sorted(actual)}, want {sorted(wanted)}")
    for name in wanted:
        got, want = actual.get(name), wanted[name]
        if name == "anonymous_ids":
            same = set(got or ()) == set(want) and len(got or ()) == len(set(got or ()))
        elif name == "category_affinity":
            same = _same_affinity(got, want)
        elif name == "average_order_value":
            same = isinstance(got, float) and abs(got - want) <= 0.01 + 1e-9
        else:
            same = got == want
        if not same:
            out.append(f"{wanted['id']}.{name}: got {got!r}, want {want!r}")
    return out


def _same_affinity(got: Any, want: dict[str, float]) -> bool:
    if not isinstance(got, dict) or set(got) != set(want):
        return False
    if not all(math.isclose(got[c], s, rel_tol=1e-6, abs_tol=2e-6) for c, s in want.items()):
        return False
    # strongest first: no category may follow one whose true score is clearly lower
    order = list(got)
    return all(want[a] >= want[b] - 2e-6 * max(1.0, want[a]) for a, b in pairwise(order))
