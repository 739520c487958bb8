"""The days the demand forecasts walk (``models/forecast/book.py`` ``walk``, the learner's
``learn_closed_days`` and ``learnable_through``): a shop's forecasts are those of walking
every day from its first, as before, unless it fell silent for longer than the gap; one
order dated 1970 no longer makes the learner learn 20,000 days of zeros, nor one dated
2999 every day to it. The oracle is the walk as it was: every day from the first counted
one through the last closed, read one by one."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping, Sequence

from cdpulse.app.forecast_learner import learn_closed_days, learnable_through
from cdpulse.cli.evaluate_forecast import replay_forecast
from cdpulse.contract.partitions import partition_of
from cdpulse.kpis.fields import DAY, DAY_MS, period_name
from cdpulse.models.forecast import ForecastBook, forecast, walk
from cdpulse.models.forecast.model import HORIZON
from cdpulse.settings import Settings
from cdpulse.simulate.shop import Shop

THURSDAY = 20454  # 2026-01-01, an epoch day
GAP = 90
Days = dict[int, dict[str, int]]


class MemoryKpis:
    """Day counters as the learner reads them from Redis, and every day it read."""

    def __init__(self, days: Mapping[int, Mapping[str, int]]) -> None:
        self.days = {day: dict(counters) for day, counters in days.items() if counters}
        self.read_days: list[int] = []
        self.scans = 0

    async def all(self, kind: int) -> dict[str, dict[str, int]]:
        assert kind == DAY
        self.scans += 1
        return {period_name(DAY, day): dict(c) for day, c in sorted(self.days.items())}

    async def read(self, kind: int, days: Sequence[int]) -> dict[int, dict[str, int]]:
        assert kind == DAY
        self.read_days.extend(days)
        return {day: dict(self.days.get(day, {})) for day in days}


def every_day(days: Days, through: int) -> ForecastBook:
    """The walk as it was: every day from the first counted through ``through``."""
    book = ForecastBook()
    book.learn_days((d, days.get(d, {})) for d in range(min(days), through + 1))
    return book


def learned(book: ForecastBook, kpis: MemoryKpis, through: int) -> ForecastBook:
    return asyncio.run(learn_closed_days(book, kpis, through, GAP))


def assert_same(book: ForecastBook, wanted: ForecastBook) -> None:
    assert book.last_day == wanted.last_day
    assert list(book.series) == list(wanted.series)
    assert book.quality() == wanted.quality()
    for key in wanted.series:
        assert forecast(book, key, HORIZON) == forecast(wanted, key, HORIZON), key


def shop_days(seed: int, first: int = THURSDAY, n: int = 150, closure: int = GAP) -> Days:
    """A shop's ``n`` daily counters: a weekly pattern, three categories, quiet days, and
    a closure of up to ``closure`` days with nothing counted at all (then sales again)."""
    rng = random.Random(seed)
    closed_from = rng.randrange(20, n - 30) if closure else n
    closed = range(closed_from, closed_from + rng.randint(1, closure or 1))
    days: Days = {}
    for d in range(n):
        if d in closed or (rng.random() < 0.1 and d - 1 not in closed and d + 1 not in closed):
            continue  # nothing counted: a real zero
        counters = {"visitors": rng.randint(1, 50)}
        for c in range(3):
            units = max(0, round(rng.gauss(6 if (first + d) % 7 == 2 else 3, 2)))
            if units:
                counters[f"units|g:c{c}"] = units
                counters[f"revenue_cents|g:c{c}"] = units * 1_500
        days[first + d] = counters
    return days


def test_a_shop_learns_what_walking_every_day_learns() -> None:
    """Quiet days and closures up to the gap are learned as zeros, whether the learner
    learns every day at once or as they close, a few at a time."""
    for seed in range(8):
        days = shop_days(seed)
        through = max(days)
        wanted = every_day(days, through)
        at_once = learned(ForecastBook(), MemoryKpis(days), through)
        assert_same(at_once, wanted)
        rng = random.Random(seed)
        book, closed = ForecastBook(), min(days) - 1
        while closed < through:
            closed = min(through, closed + rng.choice((1, 1, 2, 5, 70)))
            book = learned(book, MemoryKpis({d: c for d, c in days.items() if d <= closed}), closed)
        assert_same(book, wanted)


def test_an_order_dated_1970_changes_nothing_and_is_not_walked_to() -> None:
    days = shop_days(1)
    through = max(days)
    wanted = every_day(days, through)
    kpis = MemoryKpis({**days, 0: {"orders|d:shop": 1, "units|g:c0": 1}})
    assert_same(learned(ForecastBook(), kpis, through), wanted)
    # one SCAN for the days that counted anything, then the shop's days only
    assert kpis.scans == 1
    assert kpis.read_days == list(range(min(days), through + 1))


def test_a_book_that_learned_1970_first_starts_afresh_on_the_shop_s_first_day() -> None:
    """The 1970 order closed its own day before the shop's first orders came: the book
    holds that day, and starts afresh on the shop's first day, its version going on."""
    days = shop_days(2)
    through = max(days)
    kpis = MemoryKpis({0: {"orders|d:shop": 1}})
    book = learned(ForecastBook(), kpis, 0)
    assert book.last_day == 0
    book.version = 5
    kpis = MemoryKpis({**days, 0: {"orders|d:shop": 1}})
    book = learned(book, kpis, through)
    assert book.version == 5
    wanted = every_day(days, through)
    wanted.version = 5
    assert_same(book, wanted)
    assert kpis.read_days == list(range(min(days), through + 1))


def test_a_silence_longer_than_the_gap_starts_the_book_afresh() -> None:
    before = shop_days(3, THURSDAY, 60, closure=0)
    after = shop_days(4, THURSDAY + 60 + GAP + 1, 80, closure=0)
    days = {**before, **after}
    through = max(days)
    book = learned(ForecastBook(), MemoryKpis(before), max(before))
    # The silence closes as it goes: only up to the gap past the newest counted day.
    book = learned(book, MemoryKpis(before), max(before) + 3 * GAP)
    assert book.last_day == max(before) + GAP
    kpis = MemoryKpis(days)
    book = learned(book, kpis, through)
    assert_same(book, every_day(after, through))
    assert kpis.read_days == list(range(min(after), through + 1))
    # A replay learning it all at once walks the same days.
    assert walk(ForecastBook(), days, through, GAP).days == range(min(after), through + 1)


def test_a_gap_of_exactly_the_setting_is_learned_as_zeros() -> None:
    days = {THURSDAY: {"units|g:c0": 3}, THURSDAY + GAP + 1: {"units|g:c0": 4}}
    plan = walk(ForecastBook(), days, THURSDAY + GAP + 1, GAP)
    assert plan.days == range(THURSDAY, THURSDAY + GAP + 2)
    days[THURSDAY + GAP + 2] = days.pop(THURSDAY + GAP + 1)
    plan = walk(ForecastBook(), days, THURSDAY + GAP + 2, GAP)
    assert plan.days == range(THURSDAY + GAP + 2, THURSDAY + GAP + 3)


def test_an_order_dated_2999_does_not_close_the_days_to_it() -> None:
    """The orders' low watermark says 2999 (a producer's clock): the days close by the
    wall clock, the book learns the shop's days through yesterday, then the next ones."""
    days = shop_days(5, n=60, closure=0)
    today = max(days) + 1
    future = 376_000  # an epoch day in 2999
    now = today * DAY_MS + 2 * 3_600_000  # 02:00 on ``today``
    through = learnable_through(future * DAY_MS, 3_600_000, now, 300_000)
    assert through == today - 1
    assert learnable_through(now - 60_000, 3_600_000, now, 300_000) == through  # as before
    kpis = MemoryKpis({**days, future: {"orders|d:shop": 1}})
    book = learned(ForecastBook(), kpis, through)
    assert_same(book, every_day(days, through))
    tomorrow = {**days, today: {"units|g:c0": 7}, future: {"orders|d:shop": 1}}
    book = learned(book, MemoryKpis(tomorrow), through + 1)
    assert book.last_day == today


def test_a_book_published_before_it_kept_its_active_day_goes_on() -> None:
    days = shop_days(6, n=40, closure=0)
    book = every_day(days, max(days))
    del book.__dict__["active_day"]  # as unpickled from a book published before
    assert book.active_day is None
    plan = walk(book, [max(days) + 3], max(days) + 3, GAP)
    assert not plan.afresh and plan.days == range(max(days) + 1, max(days) + 4)


def _replay(events: list[dict[str, object]]) -> ForecastBook:
    lines = [json.dumps(e).encode() for e in events]
    settings = Settings(forecast_lateness_seconds=3600)
    return asyncio.run(replay_forecast(lines, settings, partition_of)).book


def test_evaluate_forecast_ignores_an_order_dated_1970() -> None:
    events = list(Shop(customers=60, days=40, seed=11).events())
    order = next(e for e in events if e["type"] == "order_completed")
    early = json.loads(json.dumps(order))  # another customer's order, dated 1970
    early.update(event_id="dated-1970", customer_id="C-1970", timestamp="1970-01-01T12:00:00Z")
    early["properties"]["order_id"] = "ord-1970"
    wanted = _replay(events)
    assert wanted.last_day is not None
    assert_same(_replay([early, *events]), wanted)
