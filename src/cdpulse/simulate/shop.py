"""The synthetic shop: a seeded catalogue and population, and their event stream in time order.

The stream is generated one day at a time: every customer's visits that start on a day
are played into a heap, then everything before the day's end leaves it in
(timestamp, creation order). Only a day of events (and pending refunds) is held in
memory, and the same seed always gives the same events, ids and bytes.

>>> shop = Shop(customers=20, days=3, seed=1)
>>> events = list(shop.events())
>>> events[0]["event_id"], events[0]["timestamp"] < events[-1]["timestamp"]
('sim-1-0000001', True)
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate, count

from cdpulse.simulate.catalogue import Catalogue
from cdpulse.simulate.population import DAY_MS, Customer, generate_customers
from cdpulse.simulate.storefront import Event, Storefront, Visitor, poisson

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
HOUR_MS = 3_600_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Two visits less than a session gap apart would merge into one session downstream.
SESSION_GAP_MS = 31 * 60_000
NEWSLETTER_DAYS = (1, 4)  # days of each week (counted from the start) a newsletter goes out
NEWSLETTER_HOUR = 6  # sent at 6-7h UTC: in the inbox before anyone's reading hour
# The hour of the day each customer reads email (UTC), drawn once per customer: commutes,
# lunch and, most often, the evening. Opens follow it on most days (HABIT), which is the
# pattern ``cdpulse evaluate send-time`` shows the send window learns.
_READING_HOURS = tuple(range(7, 23))
_READING_WEIGHTS = (4, 4, 2, 1, 1, 3, 3, 1, 1, 1, 2, 3, 5, 5, 4, 2)
HABIT = 0.8
# Visits per hour of the day: quiet nights, a lunch bump and a busy evening.
_HOUR_CUM_WEIGHTS = tuple(
    accumulate((1, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 7, 8, 7, 6, 6, 7, 8, 10, 11, 11, 9, 6, 3))
)

# Visits by weekday (Monday first, averaging 1): a quiet start of the week and a busy
# Saturday, the weekly pattern the demand forecasts learn.
WEEKDAY_VISITS = (0.85, 0.8, 0.85, 0.95, 1.1, 1.45, 1.0)


VIEWS = frozenset({"page_viewed", "product_viewed", "search_performed"})


@dataclass(frozen=True, slots=True)
class Bias:
    """A measurement bias injected into one group: a broken tracker in ``country`` sends
    each of its customers' views (page, product, search) ``copies`` times, each copy a
    millisecond after the one before and with an id of its own. Their behaviour, and so
    their churn, is what it was; the activity counts a model reads are inflated, for them
    alone (``cdpulse evaluate fairness`` should flag the model's scores of them)."""

    country: str
    copies: int = 3

    def __post_init__(self) -> None:
        if self.copies < 2:
            raise ValueError(f"a bias sends each view 2 or more times, got {self.copies}")


@dataclass(frozen=True, slots=True)
class CustomerTruth:
    """What the events hide about one customer, for training and scoring models."""

    customer_id: str
    anonymous_id: str | None
    churn_at: datetime | None
    identified_at: datetime | None  # when identify first linked the customer; None if never


class Shop:
    """A seeded synthetic shop: its catalogue, its customers and their events."""

    def __init__(
        self,
        customers: int,
        days: int,
        seed: int,
        start: datetime = DEFAULT_START,
        bias: Bias | None = None,
        responsive: bool = False,
    ) -> None:
        if customers < 0:
            raise ValueError(f"customers must be >= 0, got {customers}")
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        if start.tzinfo is None:
            raise ValueError(f"start {start.isoformat()} has no UTC offset")
        self.seed = seed
        self.days = days
        self.bias = bias
        # Newsletter clicks follow the customer's purchase intent (``Storefront``); off,
        # every seed's events stay as they were before the option.
        self.responsive = responsive
        self.start = start.astimezone(UTC)
        self.end = self.start + timedelta(days=days)
        rng = random.Random(f"cdpulse-shop:{seed}")
        self.catalogue = Catalogue.generate(rng)
        self.customers: tuple[Customer, ...] = generate_customers(
            rng, self.catalogue, customers, self.start, days
        )
        self._visitors: list[Visitor] = []
        self._reading = random.Random()

    def events(self) -> Iterator[Event]:
        """Every event of the run as a contract-valid dict, in (timestamp, creation) order."""
        # A separate stream for events, so the population does not shift when the
        # storefront's behaviour changes.
        rng = random.Random(f"cdpulse-events:{self.seed}")
        heap: list[tuple[int, int, Event]] = []
        created = count()

        bias = self.bias
        biased: set[str] = set()
        if bias is not None:
            for c in self.customers:
                if c.country == bias.country:
                    biased.update(i for i in (c.customer_id, c.anonymous_id) if i is not None)

        def push(ts_ms: int, event: Event) -> None:
            heapq.heappush(heap, (ts_ms, next(created), event))
            who = event.get("customer_id") or event.get("anonymous_id")
            if bias is not None and event["type"] in VIEWS and who in biased:
                for copy in range(1, bias.copies):
                    heapq.heappush(heap, (ts_ms + copy, next(created), dict(event)))

        front = Storefront(rng, self.catalogue, push, self.responsive)
        start_ms = _epoch_ms(self.start)
        end_ms = start_ms + self.days * DAY_MS
        self._visitors = visitors = [
            Visitor(
                customer=c,
                limit_ms=end_ms if c.churn_at is None else _epoch_ms(c.churn_at),
                identified=c.anonymous_id is None,
            )
            for c in self.customers
        ]
        # Its own stream, so the events' stream draws what it drew before reading hours.
        reading = random.Random(f"cdpulse-reading:{self.seed}")
        for v in visitors:
            v.reading_hour = reading.choices(_READING_HOURS, weights=_READING_WEIGHTS)[0]
        self._reading = reading
        formatter = _TimestampFormatter()
        emitted = 0
        for day in range(self.days):
            day_ms = start_ms + day * DAY_MS
            campaign = None
            if day % 7 in NEWSLETTER_DAYS:
                campaign = f"newsletter-{(self.start + timedelta(days=day)).date().isoformat()}"
            for v in visitors:
                if day >= v.customer.first_day and day_ms < v.limit_ms:
                    self._play_day(rng, front, v, day_ms, campaign)
            while heap and heap[0][0] < day_ms + DAY_MS:
                ts_ms, _, event = heapq.heappop(heap)
                emitted += 1
                event["event_id"] = f"sim-{self.seed}-{emitted:07d}"
                event["timestamp"] = formatter(ts_ms)
                yield event
        # Every visitor's limit is at or before the end, so nothing can be left over.
        if heap:
            raise AssertionError(f"{len(heap)} events scheduled after the end of the run")

    def _play_day(
        self,
        rng: random.Random,
        front: Storefront,
        v: Visitor,
        day_ms: int,
        campaign: str | None,
    ) -> None:
        c = v.customer
        days_before_churn = None if c.churn_at is None else (v.limit_ms - day_ms) / DAY_MS
        weekday = WEEKDAY_VISITS[(day_ms // DAY_MS + 3) % 7]  # epoch day 0: a Thursday
        visits: list[tuple[int, str | None]] = [
            (day_ms + _time_of_day(rng), None)
            for _ in range(poisson(rng, c.visit_rate_at(days_before_churn) * weekday))
        ]
        if campaign is not None and v.identified and v.marketing is not False:
            sent = day_ms + NEWSLETTER_HOUR * HOUR_MS + rng.randrange(HOUR_MS)
            read = day_ms + v.reading_hour * HOUR_MS if self._reading.random() < HABIT else None
            clicked = front.newsletter(v, sent, campaign, read)
            if clicked is not None:
                visits.append((clicked + 5_000, campaign))
        if v.identified and rng.random() < c.store_rate:
            front.store_purchase(v, day_ms + rng.randrange(10 * HOUR_MS, 19 * HOUR_MS))
        for start_ms, visit_campaign in sorted(visits, key=lambda visit: visit[0]):
            start_ms = max(start_ms, v.busy_until_ms)
            # A visit pushed past midnight is dropped: tomorrow's visits are played
            # after today's, and must not start before one of today's ends.
            if start_ms >= day_ms + DAY_MS:
                break
            v.busy_until_ms = front.session(v, start_ms, visit_campaign) + SESSION_GAP_MS

    def ground_truth(self) -> list[CustomerTruth]:
        """Per customer: churn date, anonymous id, and (once events() ran) when it was linked."""
        identified = {v.customer.customer_id: v.identified_at_ms for v in self._visitors}
        truths = []
        for c in self.customers:
            linked_ms = identified.get(c.customer_id) if c.anonymous_id is not None else None
            linked = None if linked_ms is None else datetime.fromtimestamp(linked_ms / 1000, UTC)
            truths.append(CustomerTruth(c.customer_id, c.anonymous_id, c.churn_at, linked))
        return truths


def simulate(
    customers: int, days: int, seed: int, start: datetime = DEFAULT_START
) -> Iterator[Event]:
    """The events of a fresh ``Shop``: the streaming entry point when no ground truth is needed."""
    return Shop(customers, days, seed, start).events()


def _time_of_day(rng: random.Random) -> int:
    hour = rng.choices(range(24), cum_weights=_HOUR_CUM_WEIGHTS)[0]
    return hour * HOUR_MS + rng.randrange(HOUR_MS)


def _epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


class _TimestampFormatter:
    """Epoch milliseconds to RFC 3339 with Z, without a datetime per event."""

    def __init__(self) -> None:
        self._dates: dict[int, str] = {}

    def __call__(self, ts_ms: int) -> str:
        day, rest = divmod(ts_ms, DAY_MS)
        date = self._dates.get(day)
        if date is None:
            date = datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()
            self._dates[day] = date
        hours, rest = divmod(rest, HOUR_MS)
        minutes, rest = divmod(rest, 60_000)
        seconds, millis = divmod(rest, 1000)
        return f"{date}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"
