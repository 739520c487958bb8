"""The pure stages of the profile pipeline, per profile: merge → apply → churn → segments
→ triggers → experiments → item events, summaries and identity entries.

Nothing here reads a clock or does I/O: the stages run on a ``View`` (what the batch
read) and fill a ``Work`` (what it will publish and write). The live worker, the replay
of ``cdpulse evaluate`` and the unit tests therefore decide the same things from the
same events.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cdpulse.contract.mirror import (
    ConsentUpdatedEvent,
    CustomersMergedEvent,
    EmailClickedEvent,
    EmailOpenedEvent,
    IdentifyEvent,
    OfferRedeemedEvent,
    OfferShownEvent,
    OrderCompletedEvent,
)
from cdpulse.experiments.definitions import Experiment
from cdpulse.kpis.fold import KpiFold
from cdpulse.kpis.tally import Tally
from cdpulse.models.campaign.labels import CampaignExample, CampaignLabeler, merge_exposures
from cdpulse.models.campaign.model import CampaignSnapshot
from cdpulse.models.churn.labels import ChurnLabeler, Example
from cdpulse.models.churn.model import Snapshot
from cdpulse.models.churn.scoring import ChurnScoring
from cdpulse.models.clv.bgnbd import BGNBDParams
from cdpulse.models.clv.lifetime import ClvSnapshot, OrderSummary
from cdpulse.models.next_purchase import observe_order
from cdpulse.models.personas_labels import PersonaExample, PersonaLabeler
from cdpulse.models.personas_learner import PersonaState
from cdpulse.models.reco_stream import ITEM_TYPES, ItemEvent, RecoSnapshot
from cdpulse.models.send_time import observe_open
from cdpulse.monitors.health import Gate
from cdpulse.offers.bandit import OfferPolicy
from cdpulse.offers.choice import Chooser
from cdpulse.pipeline.decode import Item
from cdpulse.pipeline.outputs import Outputs, Stream
from cdpulse.pipeline.state import Changes, MergedCustomer, Save, Stored
from cdpulse.privacy.consent import allows
from cdpulse.privacy.identities import pseudonyms_of
from cdpulse.privacy.merges import MergeAudit
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules, apply_new, is_duplicate, merge, new_profile, note
from cdpulse.segments.definitions import SegmentBook
from cdpulse.segments.membership import Transition, changes, enter
from cdpulse.segments.sketches import RfmSketches
from cdpulse.triggers.decide import Attribution, Decision
from cdpulse.triggers.engine import Expired, TriggerEngine, no_offer
from cdpulse.triggers.outputs import rewards, trigger_messages, uplift_tallies
from cdpulse.triggers.rules import TriggerConfig
from cdpulse.triggers.situations import Transition as Entry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Models:
    """The newest published models the stages score with; the app refreshes them."""

    churn: Snapshot | None = None
    rfm: RfmSketches | None = None
    offers: OfferPolicy | None = None
    reco: RecoSnapshot | None = None
    clv: ClvSnapshot | None = None  # segments read lifetime value and the next order
    campaign: CampaignSnapshot | None = None  # and the campaign-response propensity
    personas: PersonaState | None = None  # and the customer's persona
    offer_policy_name: str = "untrained"
    gate: Gate | None = None  # the input-health flags gated trigger rules read


@dataclass(frozen=True, slots=True)
class Engine:
    """What the stages are configured with: rules, models, segments, triggers, experiments."""

    rules: Rules
    models: Models
    labeler: ChurnLabeler | None = None
    campaign: CampaignLabeler | None = None  # campaign-response labels (None: off)
    personas: PersonaLabeler | None = None  # persona examples (None: off)
    triggers: TriggerConfig | None = None
    trigger_lateness: int = 0
    book: SegmentBook | None = None
    experiments: tuple[Experiment, ...] = ()
    item_events: bool = False
    pseudonym: Callable[[str], str] = lambda profile_id: profile_id
    kpis: bool = True  # count the live KPIs with each save (``cdpulse.kpis``)

    def churn(self) -> ChurnScoring | None:
        if self.labeler is None:
            return None
        models = self.models
        return ChurnScoring(self.labeler, lambda: models.churn)

    def trigger_hooks(self) -> TriggerEngine | None:
        if self.triggers is None or not self.triggers.rules:
            return None
        models = self.models

        def chooser(profile: Profile) -> Chooser:
            policy = models.offers
            return policy.chooser(profile) if policy is not None else no_offer

        return TriggerEngine(
            self.triggers,
            session_gap=self.rules.session_gap,
            lateness=self.trigger_lateness,
            chooser=chooser,
            gate=lambda: models.gate,
            rules=self.rules,
        )


@dataclass(slots=True)
class Work:
    """What the stages decided for one batch: records to publish, changes to write."""

    outputs: Outputs = field(default_factory=Outputs)
    changes: Changes = field(default_factory=Changes)
    saved: dict[str, Profile] = field(default_factory=dict)  # as they will be written
    counts: Counter[str] = field(default_factory=Counter)
    transitions: list[Transition] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    attributions: list[Attribution] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)  # as decided (not pseudonymised)
    campaign: list[CampaignExample] = field(default_factory=list)  # as ``examples``
    personas: list[PersonaExample] = field(default_factory=list)  # as ``examples``
    segment_errors: Counter[str] = field(default_factory=Counter)
    # the earliest hour a gated situation due is held for (``Expired.held``): the worker
    # runs a batch once the gate judges it, though no event comes
    held: int | None = None

    def absorb(self, other: Work, outputs: bool = True) -> None:
        """Add ``other`` to this work (its records too, unless ``outputs`` is False)."""
        # Once per profile per batch: most of ``other`` is empty, and skipping what is
        # costs less than Counter.update and list concatenation on nothing.
        if outputs and other.outputs.records:
            self.outputs.extend(other.outputs)
        if other.changes.saves:
            self.changes.saves += other.changes.saves
        counts = self.counts
        for name, n in other.counts.items():
            counts[name] += n
        if other.transitions:
            self.transitions += other.transitions
        if other.decisions:
            self.decisions += other.decisions
        if other.attributions:
            self.attributions += other.attributions
        if other.examples:
            self.examples += other.examples
        if other.campaign:
            self.campaign += other.campaign
        if other.personas:
            self.personas += other.personas
        if other.segment_errors:
            self.segment_errors.update(other.segment_errors)
        if other.saved:
            self.saved.update(other.saved)
        if other.held is not None:
            self.held = other.held if self.held is None else min(self.held, other.held)


@dataclass(slots=True)
class ProfileUpdate:
    """One profile's share of a batch: its events and the profiles merged into it."""

    target: str
    stored: Stored
    items: list[Item] = field(default_factory=list)
    merged: list[Profile] = field(default_factory=list)
    merged_versions: dict[str, int] = field(default_factory=dict)  # as read: saved only if so
    links: list[str] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)  # of ``merged``: an admin merge's
    due: bool = False  # loaded because its schedule said so, events or not


class Stages:
    """Runs the per-profile stages of a batch for an ``Engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.rules = engine.rules
        self.scoring = engine.churn()
        self.campaign = engine.campaign
        self.personas = engine.personas
        self.hooks = engine.trigger_hooks()
        self.kpis = KpiFold(engine.rules.session_gap) if engine.kpis else None

    def publish_examples(
        self,
        examples: list[Example],
        work: Work,
        campaign: list[CampaignExample] | None = None,
        personas: list[PersonaExample] | None = None,
    ) -> None:
        """The batch's churn (campaign, persona) examples, to their training topics in decision
        order: with one worker each topic then holds them in exactly the order a replay
        produces them."""
        examples.sort(key=lambda e: e.order)
        pseudonym = self.engine.pseudonym
        # The training topics outlive an erasure: customers by pseudonym only. Written
        # under it, not copied with it (``dataclasses.replace``: ~7 µs an example, and a
        # profile decided because its labels came due publishes one or more).
        add = work.outputs.add
        for example in examples:
            key = pseudonym(example.profile_id)
            add(Stream.TRAINING, key.encode(), example.to_json(key))
        for labelled in sorted(campaign or (), key=lambda e: e.order):
            key = pseudonym(labelled.profile_id)
            add(Stream.CAMPAIGN_TRAINING, key.encode(), labelled.to_json(key))
        for point in sorted(personas or (), key=lambda e: e.order):
            key = pseudonym(point.profile_id)
            add(Stream.PERSONA_TRAINING, key.encode(), point.to_json(key))

    # --- one profile ------------------------------------------------------------------

    def one(
        self,
        update: ProfileUpdate,
        watermark: int,
        as_of: int,
        exposures: dict[str, dict[str, tuple[str, int]]],
        work: Work,
    ) -> list[Example]:
        """Run every stage on one profile; its churn examples (published by ``run``)."""
        engine, rules = self.engine, self.rules
        stored = update.stored
        profile = stored.profile or new_profile(update.target)
        outbox = profile.outbox
        if outbox:
            # Saved by the sweep, maybe never published: published again, then cleared.
            for value in outbox:
                work.outputs.add(Stream.SEGMENTS, profile.id.encode(), value)
            profile.outbox = []
        # What only orders, refunds and identifies change (and merges) is compared
        # before and after only when one of those came.
        money_before = _money(profile)
        traits_before = dict(profile.traits) if update.merged else None
        retired: dict[str, int] = {}
        capped = 0  # event ids the dedupe window's cap dropped
        customers: dict[str, MergedCustomer] = {}
        kpis = self.kpis
        tally = Tally()
        for other in update.merged:
            if other.id not in profile.merged_from:
                joined = kpis.merge(profile, other) if kpis is not None else None
                capped += merge(profile, other, rules, work.counts)
                if other.campaign is not None:
                    merge_exposures(profile, other)
                if joined is not None and allows(profile, "analytics"):
                    profile.activity = joined[0]
                    tally.absorb(joined[1])
                work.counts["customer_merges" if other.customer_id else "merges"] += 1
            # even when merged by an earlier, interrupted attempt
            retired[other.id] = update.merged_versions[other.id]
            if other.id in update.customers:
                segments = [name for name, n in other.segments.items() if n % 2]
                customers[other.id] = MergedCustomer(list(other.anonymous_ids), segments)
                # It is no one now: it leaves its segments (the survivor's are decided
                # below, on the merged profile).
                at = max(profile.last_seen, other.last_seen)
                for name in segments:
                    left_one = Transition(other.id, name, False, at, other.segments[name] + 1)
                    work.transitions.append(left_one)
                    work.outputs.add(Stream.SEGMENTS, other.id.encode(), left_one.to_json())
        for merged_id in update.customers:
            if merged_id in customers:
                continue
            # Never stored: a customer first seen earlier in the merge's own batch, whose
            # events there resolve to the survivor already. Merged all the same (known is
            # known, wherever the stream was cut); its version 0 is checked like a
            # visitor's, so a profile another worker stored meanwhile refuses the save.
            customers[merged_id] = MergedCustomer()
            retired[merged_id] = 0
            if merged_id not in profile.merged_from:
                profile.merged_from.append(merged_id)
                work.counts["customer_merges"] += 1
            for ids in (profile.merged_customers, profile.anonymous_ids):
                if merged_id not in ids:
                    ids.append(merged_id)
        if customers and profile.customer_id is None:
            profile.customer_id = update.target  # the survivor: a known customer

        applied = duplicates = 0
        ordered = noted = False
        unnoted: list[Item] = []  # merges refused while the profile was not stored
        pseudonym = ""
        hooks, counts, campaign = self.hooks, work.counts, self.campaign  # once, not per event
        # The newest event time the profile has seen, which its segment changes are dated
        # at: its ``last_seen`` unless an analytics refusal reset that to 0 in this batch
        # (then an exit would be dated 1970, before the entry it closes).
        newest = profile.last_seen
        for item in update.items:
            event, message = item.event, item.message
            if is_duplicate(profile, event.event_id, item.source, message.offset):
                duplicates += 1
                continue
            if type(event) is CustomersMergedEvent:
                # An admin operation, not the customer's behaviour: only its offset is
                # kept, so a re-delivery is known (a refused one is not dead-lettered
                # again). The merge itself is ``update.merged``. A refused merge into
                # no stored profile creates none.
                if stored.profile is not None or not item.refused:
                    note(profile, item.source, message.offset)
                    noted = True
                else:
                    unnoted.append(item)
                outcome = item.refused or "merged"
                log.info(
                    "customers_merged %s: %s, requested by %s",
                    event.event_id,
                    outcome,
                    event.properties.requested_by,
                )
                audit = MergeAudit.of(
                    engine.pseudonym(event.key),
                    engine.pseudonym(event.properties.merged_id),
                    event.properties.requested_by,
                    event.event_id,
                    event.at,
                    outcome,
                )
                work.outputs.add(Stream.AUDIT, audit.survivor.encode(), audit.audit_json())
                continue
            if engine.item_events and event.type in ITEM_TYPES and _learns_from(profile):
                # The recommender learns from the customer as they were before the event,
                # by pseudonym (its topic's history outlives an erasure) and only what it
                # reads of the event: products, levels, times; no context, no other id.
                pseudonym = pseudonym or engine.pseudonym(update.target)
                item_event = ItemEvent.of(pseudonym, event, profile, message.timestamp or 0.0)
                work.outputs.add(Stream.RECO_EVENTS, pseudonym.encode(), item_event.to_json())
            if traits_before is None and type(event) in _TRAIT_CHANGERS:
                traits_before = dict(profile.traits)  # as they were before this batch
            spans = profile.spans  # as they were before the event (``KpiFold.observe``)
            if type(event) is EmailOpenedEvent and event.customer_id is not None:
                observe_open(profile, event.at, event.timestamp, counts)
            elif type(event) is OrderCompletedEvent and event.customer_id is not None:
                observe_order(profile, _purchases(engine.models.clv), event.at, counts)
            capped += apply_new(profile, event, rules, item.source, message.offset, counts)
            if event.at > newest:
                newest = event.at
            if campaign is not None and event.customer_id is not None:
                touched = _campaign_of(event)
                if touched is not None:
                    campaign.observe(profile, event.type, touched, event.at, counts)
            if kpis is not None:
                kpis.observe(profile, event, spans, tally)
            applied += 1
            if type(event) is OrderCompletedEvent:
                ordered = True
            elif type(event) is IdentifyEvent and event.properties.traits:
                counts["traits_dropped"] += rules.traits.dropped(event.properties.traits)
            if hooks is not None:
                hooks.observe(profile, event, event.at, counts)
        if applied:
            # The profile is stored after all (events of the batch created it): its
            # refused merges are known there on a re-delivery, which must not decide
            # them again on what is stored by then (``pipeline/identity.py``).
            for item in unnoted:
                if item.message.offset > profile.offsets.get(item.source or "", -1):
                    note(profile, item.source, item.message.offset)
        work.counts["applied"] += applied
        work.counts["duplicates"] += duplicates
        if capped:
            work.counts["dedupe_ids_dropped"] += capped
        changed = bool(applied or retired or noted)

        # Campaign labels first: churn's labeler drops the days an analytics refusal kept
        # once the watermark passes it, and the campaign labels due by then read them.
        campaign_due: int | None = None
        if campaign is not None and profile.campaign is not None:
            labelled, campaign_due = campaign.decide(profile, watermark)
            if labelled:
                work.campaign += labelled
                changed = True
        persona_due: int | None = None
        if self.personas is not None:
            points, persona_due = self.personas.decide(profile, watermark)
            if points:
                work.personas += points
                changed = True
        churn_due: int | None = None
        examples: list[Example] = []
        if self.scoring is not None:
            if changed:
                examples, churn_due = self.scoring.after_profile(profile, watermark, as_of)
            else:
                examples, churn_due = self.scoring.expire(profile, watermark)
            changed = changed or bool(examples)
        # A profile loaded because its schedule came due is saved whatever was decided:
        # only its save moves the schedule past the watermark, else every batch polls it
        # again and, once a shard holds due_limit of them, crowds out later ones.
        changed = changed or update.due or bool(outbox)

        entries: list[Entry] = []
        left: list[str] = []
        entered: list[str] = []
        # Segments read a profile as of its last event (``segments.fields``): only events
        # and merges can move it (RFM, which moves with everyone's, has its own sweep).
        if (applied or retired) and engine.book is not None and profile.customer_id is not None:
            found = self._segments(profile, work, max(newest, profile.last_seen))
            enter(profile, found)
            for t in found:
                work.transitions.append(t)
                work.outputs.add(Stream.SEGMENTS, t.customer_id.encode(), t.to_json())
                (entered if t.entered else left).append(t.segment)
                if t.entered:
                    entries.append(Entry(t.customer_id, t.segment, True, t.at_ms))

        trigger_due: int | None = None
        tallies: list[tuple[str, str, str]] = []
        if self.hooks is not None:
            if applied or entries:
                self.hooks.after_profile(profile, entries)
            decided, trigger_due = self.hooks.decide_due(profile, watermark)
            if decided.held is not None:
                work.held = decided.held if work.held is None else min(work.held, decided.held)
            if decided.profiles:
                tallies = self._settle(decided, work)
                changed = True

        if not changed:
            return examples
        conversions: list[tuple[str, str]] = []
        if ordered and engine.experiments and profile.last_order_at is not None:
            conversions = self._conversions(profile, exposures)
        # Unchanged: the stored one stands.
        summary = OrderSummary.of(profile) if _money(profile) != money_before else None
        identities: list[str] = []
        if (
            profile.customer_id is not None
            and traits_before is not None
            and profile.traits != traits_before
        ):
            identities = pseudonyms_of(profile.traits, rules.traits.personal)
        work.changes.saves.append(
            Save(
                profile,
                stored.version,
                links=update.links,
                retire=retired,
                customers=customers,
                # One labels' schedule: the earliest of churn's, campaign's and personas'.
                churn_due=_earliest(_earliest(churn_due, campaign_due), persona_due),
                trigger_due=trigger_due,
                entered=entered,
                left=left,
                summary=summary.to_json() if summary is not None else None,
                identities=identities,
                conversions=conversions,
                tallies=tallies,
                pseudonym=engine.pseudonym(profile.id) if engine.item_events else None,
                kpis=tally.counters(_member_of(profile)) if tally else {},
            )
        )
        work.saved[profile.id] = profile
        return examples

    def _segments(self, profile: Profile, work: Work, at_ms: int) -> list[Transition]:
        """The segment transitions of ``profile``'s newest state (identified customers),
        dated ``at_ms``."""
        book = self.engine.book
        assert book is not None
        models = self.engine.models
        found, errors = changes(
            book,
            profile,
            self.rules,
            models.rfm,
            models.clv,
            models.campaign,
            models.personas,
            at_ms=at_ms,
        )
        for name in errors:
            work.segment_errors[name] += 1
        return found

    def _conversions(
        self, profile: Profile, exposures: dict[str, dict[str, tuple[str, int]]]
    ) -> list[tuple[str, str]]:
        """An exposed customer's order within the window converts them (counted once)."""
        last = profile.last_order_at
        assert last is not None
        out = []
        for experiment in self.engine.experiments:
            seen = exposures.get(experiment.name, {}).get(profile.id)
            if seen is not None and seen[1] <= last < seen[1] + experiment.window_ms:
                out.append((experiment.name, seen[0]))
        return out

    def _settle(self, decided: Expired, work: Work) -> list[tuple[str, str, str]]:
        """Trigger documents and offer rewards of one profile's decisions, to publish; the
        uplift tallies they settle, to count with its save."""
        engine = self.engine
        assert self.hooks is not None
        work.decisions += decided.decisions
        work.attributions += decided.attributions
        for message in trigger_messages(
            decided,
            self.hooks.config,
            engine.models.reco,
            engine.models.offer_policy_name,
            engine.pseudonym,
        ):
            work.outputs.add(
                Stream.TRIGGERS, message.customer_id.encode(), message.model_dump_json().encode()
            )
        for reward in rewards(decided):
            # The learner needs the offer, features and reward, not who converted.
            pseudonymous = replace(reward, trigger_id=engine.pseudonym(reward.trigger_id))
            work.outputs.add(Stream.OFFER_REWARDS, reward.rule.encode(), pseudonymous.to_json())
        return [(t.claim, t.rule, t.counter) for t in uplift_tallies(decided)]


# Events whose application may change a profile's traits (consent can minimise them).
_TRAIT_CHANGERS = (IdentifyEvent, ConsentUpdatedEvent)


def _campaign_of(event: object) -> str | None:
    """The campaign or offer an exposure or response is about (None: another event)."""
    if type(event) is EmailOpenedEvent or type(event) is EmailClickedEvent:
        return event.properties.campaign_id
    if type(event) is OfferShownEvent or type(event) is OfferRedeemedEvent:
        return event.properties.offer_id
    return None


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _purchases(clv: ClvSnapshot | None) -> BGNBDParams | None:
    """The purchase-rate fit the next purchase reads (``profile_document``'s)."""
    return clv.model.purchases if clv is not None else None


def _money(profile: Profile) -> tuple[int, float, float, int | None, int | None]:
    """What the lifetime-value summary is made of."""
    return (
        profile.orders,
        profile.revenue,
        profile.refunded,
        profile.first_order_at,
        profile.last_order_at,
    )


def _member_of(profile: Profile) -> set[str]:
    """The segments ``profile`` is in (odd generation): its KPI counts are split by them."""
    return {name for name, generation in profile.segments.items() if generation % 2}


def _learns_from(profile: Profile) -> bool:
    """Whether the recommender may learn from this customer (README: consent matrix)."""
    # Once per item event: no consent given is both purposes' default, allowed.
    return not profile.consent or (
        allows(profile, "analytics") and allows(profile, "personalization")
    )
