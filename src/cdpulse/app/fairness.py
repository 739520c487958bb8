"""Fairness in the running engine: the learner's report, and ``GET /v1/fairness``.

The learner keeps the newest ``WINDOW`` churn examples it learned (the customer's
pseudonym, the score before learning, the label). Every ``CDPULSE_FAIRNESS_SECONDS`` one
learner at a time (a lock) resolves those customers (the pseudonym index, then their
profiles), reads their groups (``CDPULSE_FAIRNESS_GROUPS``) and makes the report over
them: churn (scores, labels), lifetime value (with the newest parameters) and each
trigger rule (the firings their watches keep). The report is published to Redis; the api
answers ``GET /v1/fairness`` (scope ``read``) with the newest, and ``cdpulse evaluate
fairness`` makes the same report over an event file.

The window lives in the learner's memory: a restarted learner reports again once it has
learned examples. Customers erased since are left out (their pseudonym leads nowhere).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

import faust
import msgspec
from faust.web import Request, Response, View

from cdpulse.app.auth import Guard
from cdpulse.models.churn.labels import Example
from cdpulse.models.clv.lifetime import ClvSnapshot
from cdpulse.models.fairness import SELECTED_AT, FairnessReport, fairness_report, subject_report
from cdpulse.models.fairness_outcomes import (
    churn_outcomes,
    clv_outcomes,
    watched_rule_outcomes,
)
from cdpulse.ops import metrics
from cdpulse.pipeline.state import Wanted
from cdpulse.profile.model import Profile
from cdpulse.settings import Settings
from cdpulse.store.fairness import RedisFairnessStore
from cdpulse.store.redis import get_many
from cdpulse.store.state import RedisState

log = logging.getLogger(__name__)

WINDOW = 20_000  # churn examples the live report is made over, the newest
PAGE = 1000  # ids resolved and profiles read per round trip


class LearnerFairness:
    """The learner's window of churn examples and the report job."""

    def __init__(
        self,
        settings: Settings,
        store: RedisFairnessStore,
        state: RedisState,
        rules: Sequence[str],
    ) -> None:
        self.settings = settings
        self.store = store
        self.state = state
        self.keys = state.keys  # one Redis's names or a Redis Cluster's
        self.rules = list(rules)
        self.recent: deque[tuple[str, float, int]] = deque(maxlen=WINDOW)

    def learned(
        self, pairs: list[tuple[int, Example]], scored: list[tuple[int, int, list[float]]]
    ) -> None:
        """Keep the examples just learned: ``scored`` (offset, time, features + score)
        names them by offset among ``pairs``."""
        by_offset = {offset: example for offset, example in pairs}
        for offset, _, values in scored:
            example = by_offset[offset]
            self.recent.append((example.profile_id, values[-1], example.label))

    async def tick(self, clv: ClvSnapshot | None) -> FairnessReport | None:
        """Under the lock, the report over the window's customers, published."""
        if not self.recent:
            return None
        if not await self.store.lock(max(1, int(self.settings.fairness_seconds))):
            return None
        window = list(self.recent)
        ids = await self._resolve(list(dict.fromkeys(p for p, _, _ in window)))
        profiles = await self._profiles(sorted(set(ids.values())))
        by_pseudonym = {p: profiles[i] for p, i in ids.items() if i in profiles}
        report = make_report(window, by_pseudonym, clv, self.rules, self.settings)
        await self.store.publish(report)
        return report

    async def _resolve(self, pseudonyms: list[str]) -> dict[str, str]:
        """pseudonym -> profile id, for the ones the pseudonym index still has."""
        out = {}
        for i in range(0, len(pseudonyms), PAGE):
            page = pseudonyms[i : i + PAGE]
            found = await get_many(self.state.client, [self.keys.profile_of(p) for p in page])
            for pseudonym, raw in zip(page, found, strict=True):
                if isinstance(raw, bytes):
                    out[pseudonym] = raw.decode()
        return out

    async def _profiles(self, ids: list[str]) -> dict[str, Profile]:
        out = {}
        for i in range(0, len(ids), PAGE):
            view = await self.state.read(Wanted(ids=set(ids[i : i + PAGE]), watermarks=False))
            for profile_id, stored in view.profiles.items():
                if stored is not None and stored.profile is not None:
                    out[profile_id] = stored.profile
        return out


def make_report(
    window: list[tuple[str, float, int]],
    profiles: dict[str, Profile],
    clv: ClvSnapshot | None,
    rules: Sequence[str],
    settings: Settings,
) -> FairnessReport:
    """The report over ``window``'s customers, ``profiles`` by the id ``window`` names."""
    groups = settings.fairness_groups
    as_of = max((p.last_seen for p in profiles.values()), default=None)
    subjects = [
        subject_report(
            "model",
            "churn",
            f"churn score >= {SELECTED_AT} (at risk)",
            churn_outcomes(window, profiles, groups),
        )
    ]
    customers = {p.id: p for p in profiles.values()}
    if clv is not None and as_of is not None:
        outcomes = clv_outcomes(customers, clv, as_of, settings.clv_horizon_days, groups)
        subjects.append(subject_report("model", "clv", "expected value in the top fifth", outcomes))
    for rule, outcomes in watched_rule_outcomes(rules, customers, groups).items():
        subjects.append(subject_report("rule", rule, "fired (a message sent)", outcomes))
    population = f"the customers of the learner's newest {len(window)} churn examples"
    return fairness_report(population, as_of, subjects)


def register_fairness_job(app: faust.App, fairness: LearnerFairness, clv: Any) -> None:
    """The learner's fairness timer; ``clv``: its lifetime-value store."""

    @app.timer(interval=fairness.settings.fairness_seconds)  # type: ignore[untyped-decorator]
    async def fairness_report_job() -> None:
        try:
            await fairness.tick(clv.get())
        except Exception as exc:  # a report: the models learn on regardless
            metrics.REDIS_ERRORS.inc()
            log.warning("fairness report failed: %s", exc)


NO_REPORT = (
    "no fairness report yet: the learner makes one every CDPULSE_FAIRNESS_SECONDS once it "
    "has learned churn examples; `cdpulse evaluate fairness --input FILE` reports on an "
    "event file"
)


def register_fairness_view(app: faust.App, store: RedisFairnessStore, guarded: Guard) -> None:
    """Add ``GET /v1/fairness`` (scope ``read``)."""

    @app.page("/v1/fairness")
    class FairnessView(View):
        @guarded("read")
        async def get(self, request: Request) -> Response:
            report = await store.load()
            if report is None:
                return self.json({"error": NO_REPORT}, status=404)
            return self.json(msgspec.to_builtins(report))
