"""Fairness of a model's or a trigger rule's decisions across customer groups.

For each declared group attribute (``CDPULSE_FAIRNESS_GROUPS``: ``channel``, ``tenure``
and allow-listed traits such as ``country``; ``groups_of``), and each subject (a model, a
trigger rule), per group: how many members, the **selection rate** (the share the
subject selected: a churn score at or above ``SELECTED_AT``, a rule that fired), the
**mean score**, **calibration** (the mean score against the observed rate, where labels
exist), the **false-positive and false-negative rates** (where labels exist), and the
**ratio** of its selection rate to the best-treated group's.

A group is *flagged* under the four-fifths rule: its ratio is below ``FOUR_FIFTHS`` and
the gap is not chance, a two-proportion z-test against the best-treated group at
``ALPHA`` divided by the comparisons the whole report makes (Bonferroni: on a population
without bias, a report of many subjects and groups flags nothing with probability at
least 95 %). Only groups of at least ``MIN_GROUP`` members are compared (a ratio over a
handful of customers says nothing), and customers whose group is ``unknown`` (no such
trait) are shown, never compared. Selection is read as the favourable outcome (a
retention offer, a message): a group selected less is the one disadvantaged. The FPR
and FNR gaps are the largest differences between groups with ``MIN_GROUP`` labelled
negatives (FPR) or positives (FNR).

>>> outcomes = [Outcome({"country": c}, selected=i % 10 < rate, score=0.5)
...             for c, rate in (("DE", 5), ("FR", 1)) for i in range(200)]
>>> report = subject_report("rule", "win_back", "fired", outcomes)
>>> [(g.group, g.selection_rate, g.ratio, g.flagged) for g in report.attributes[0].groups]
[('DE', 0.5, 1.0, False), ('FR', 0.1, 0.2, True)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from cdpulse.profile.model import Profile
from cdpulse.settings import FAIRNESS_BUILT_IN as FAIRNESS_BUILT_IN

FOUR_FIFTHS = 0.8
ALPHA = 0.05
MIN_GROUP = 30
SELECTED_AT = 0.5  # a churn score from which a customer is treated as at risk
UNKNOWN = "unknown"


def groups_of(profile: Profile, attributes: Sequence[str]) -> dict[str, str]:
    """The profile's group under each attribute: ``channel`` the channel of most of its
    events, ``tenure`` ``new`` (at most one order) or ``returning``, any other name the
    allow-listed trait of that name; ``unknown`` where the profile has none."""
    out = {}
    for name in attributes:
        if name == "channel":
            channels = profile.channels
            out[name] = min(channels, key=lambda c: (-channels[c], c)) if channels else UNKNOWN
        elif name == "tenure":
            out[name] = "returning" if profile.orders >= 2 else "new"
        else:
            found = profile.traits.get(name)
            out[name] = UNKNOWN if found is None or found[1] is None else str(found[1])
    return out


@dataclass(frozen=True, slots=True)
class Outcome:
    """One member under one subject: their groups, whether selected, the score, and the
    observed label (1: the predicted event happened) where known."""

    groups: Mapping[str, str]
    selected: bool
    score: float | None = None
    label: int | None = None


class GroupFigures(msgspec.Struct, frozen=True):
    """One group's figures under one attribute."""

    group: str
    members: int
    selection_rate: float
    ratio: float | None  # to the best-treated group's rate; None when no one was selected
    p_value: float | None  # of the gap to the best-treated group (two-proportion z-test)
    flagged: bool
    mean_score: float | None
    labelled: int  # members with an observed label
    predicted: float | None  # mean score of the labelled members with a score
    observed: float | None  # their label rate
    calibration_gap: float | None  # predicted - observed
    false_positive_rate: float | None
    false_negative_rate: float | None
    note: str = ""  # why the group is not compared, or why it is flagged


class AttributeReport(msgspec.Struct, frozen=True):
    attribute: str
    best: str | None  # the best-treated group compared
    groups: list[GroupFigures]
    fpr_gap: float | None
    fnr_gap: float | None


class SubjectReport(msgspec.Struct, frozen=True):
    """A model's or a rule's figures by group."""

    kind: str  # "model" or "rule"
    name: str
    selection: str  # what "selected" means for this subject
    members: int
    attributes: list[AttributeReport]

    @property
    def flagged(self) -> list[str]:
        """Each flagged group, in words."""
        return [
            f"{self.kind} {self.name}: {a.attribute}={g.group} {g.note}"
            for a in self.attributes
            for g in a.groups
            if g.flagged
        ]


class FairnessReport(msgspec.Struct, frozen=True):
    """Every subject's report; ``flagged`` lists what fails the four-fifths rule."""

    method: str
    population: str  # who the figures are over
    as_of: int | None  # event time, epoch ms
    subjects: list[SubjectReport]
    flagged: list[str]


METHOD = (
    f"four-fifths rule: a group whose selection rate is under {FOUR_FIFTHS} of the "
    f"best-treated group's, the gap significant (two-proportion z-test, p < {ALPHA} over "
    f"the report's comparisons, Bonferroni); groups of fewer than {MIN_GROUP} members, "
    "or whose attribute is unknown, are not compared"
)


def fairness_report(
    population: str, as_of: int | None, subjects: Iterable[SubjectReport]
) -> FairnessReport:
    """The subjects' reports, flagged at ``ALPHA`` over the comparisons of all of them."""
    found = list(subjects)
    comparisons = sum(g.p_value is not None for s in found for a in s.attributes for g in a.groups)
    flagged = [_flagged(s, ALPHA / max(1, comparisons)) for s in found]
    return FairnessReport(
        METHOD, population, as_of, flagged, [f for s in flagged for f in s.flagged]
    )


def subject_report(
    kind: str, name: str, selection: str, outcomes: Iterable[Outcome]
) -> SubjectReport:
    """The figures of one subject over its members' ``outcomes``, flagged at ``ALPHA`` as
    if it were the only comparison (``fairness_report`` corrects for all of them)."""
    members = list(outcomes)
    attributes = sorted({a for o in members for a in o.groups})
    report = SubjectReport(
        kind,
        name,
        selection,
        len(members),
        [_attribute(attribute, members) for attribute in attributes],
    )
    return _flagged(report, ALPHA)


def _flagged(report: SubjectReport, alpha: float) -> SubjectReport:
    """``report`` with each compared group flagged, and its note, at ``alpha``."""
    attributes = []
    for a in report.attributes:
        top = next((g for g in a.groups if g.group == a.best), None)
        groups = []
        for g in a.groups:
            note = g.note
            flagged = False
            if top is not None and g.ratio is not None and g.p_value is not None:
                flagged = g.ratio < FOUR_FIFTHS and g.p_value < alpha
                note = (
                    f"selected {g.selection_rate:.1%} against {top.selection_rate:.1%} for "
                    f"{top.group} (ratio {g.ratio:.2f} < {FOUR_FIFTHS}, p = {g.p_value:.2g})"
                    if flagged
                    else ""
                )
            groups.append(msgspec.structs.replace(g, flagged=flagged, note=note))
        attributes.append(msgspec.structs.replace(a, groups=groups))
    return msgspec.structs.replace(report, attributes=attributes)


def _attribute(attribute: str, members: list[Outcome]) -> AttributeReport:
    by_group: dict[str, list[Outcome]] = {}
    for o in members:
        by_group.setdefault(o.groups.get(attribute, UNKNOWN), []).append(o)
    rates = {g: sum(o.selected for o in m) / len(m) for g, m in by_group.items()}
    compared = {g: r for g, r in rates.items() if len(by_group[g]) >= MIN_GROUP and g != UNKNOWN}
    best = min(compared, key=lambda g: (-compared[g], g)) if compared else None
    top = by_group.get(best, []) if best is not None else []
    groups = [_group(group, by_group[group], best, top) for group in sorted(by_group)]
    fprs = [g.false_positive_rate for g in groups if g.false_positive_rate is not None]
    fnrs = [g.false_negative_rate for g in groups if g.false_negative_rate is not None]
    return AttributeReport(
        attribute,
        best,
        groups,
        _round(max(fprs) - min(fprs)) if len(fprs) > 1 else None,
        _round(max(fnrs) - min(fnrs)) if len(fnrs) > 1 else None,
    )


def _group(
    group: str, members: list[Outcome], best: str | None, top: list[Outcome]
) -> GroupFigures:
    n = len(members)
    chosen = sum(o.selected for o in members)
    rate = chosen / n
    scores = [o.score for o in members if o.score is not None]
    labelled = [(o.score, o.label, o.selected) for o in members if o.label is not None]
    positives = [selected for _, label, selected in labelled if label]
    negatives = [selected for _, label, selected in labelled if not label]
    scored = [(score, label) for score, label, _ in labelled if score is not None]
    ratio: float | None = None
    p: float | None = None
    note = ""
    if group == UNKNOWN:
        note = "not compared: the attribute is unknown for them"
    elif n < MIN_GROUP:
        note = f"not compared: {n} members, fewer than {MIN_GROUP}"
    elif group == best:
        ratio = 1.0
    elif best is not None and any(o.selected for o in top):  # none selected: no comparison
        top_rate = sum(o.selected for o in top) / len(top)
        ratio = rate / top_rate
        p = _two_proportion_p(chosen, n, sum(o.selected for o in top), len(top))
    predicted = _mean([score for score, _ in scored])
    observed = _mean([float(label) for _, label in scored])
    return GroupFigures(
        group,
        n,
        _round(rate),
        None if ratio is None else _round(ratio),
        p,
        False,
        None if not scores else _round(sum(scores) / len(scores)),
        len(labelled),
        None if predicted is None else _round(predicted),
        None if observed is None else _round(observed),
        None if predicted is None or observed is None else _round(predicted - observed),
        _rate(sum(negatives), len(negatives)),
        _rate(len(positives) - sum(positives), len(positives)),
        note,
    )


def _rate(count: int, of: int) -> float | None:
    """A rate over at least ``MIN_GROUP`` cases, else None (too few to read)."""
    return _round(count / of) if of >= MIN_GROUP else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(value: float) -> float:
    return round(value, 6)


def _two_proportion_p(a: int, n: int, b: int, m: int) -> float:
    """Two-sided p-value that selection rates a/n and b/m differ by chance (pooled z)."""
    pooled = (a + b) / (n + m)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    if spread == 0:
        return 1.0
    z = abs(a / n - b / m) / spread
    return math.erfc(z / math.sqrt(2))
