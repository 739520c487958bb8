"""``cdpulse evaluate fairness``: the fairness report of a replayed event file.

The file runs through the worker's pipeline in-process with the churn labeler and
learner and the trigger rules (``replay.replay_churn``); lifetime value is fitted on the
order summaries the replay leaves. Then each subject's outcomes by group
(``models/fairness_outcomes.py``) make the report (``models/fairness.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cdpulse.models.clv.lifetime import OrderSummary, refit
from cdpulse.models.fairness import SELECTED_AT, FairnessReport, fairness_report, subject_report
from cdpulse.models.fairness_outcomes import churn_outcomes, clv_outcomes, rule_outcomes
from cdpulse.pipeline.replay import Partitioner, replay_churn
from cdpulse.settings import Settings
from cdpulse.triggers.rules import load_rules


async def replay_fairness(
    lines: Iterable[bytes],
    settings: Settings,
    partition_of: Partitioner,
    *,
    progress: Callable[[int], None] | None = None,
) -> FairnessReport:
    """The report over the customers of ``lines`` (JSON Lines, in event-time order)."""
    rules = load_rules(settings.trigger_rules)
    replayed = await replay_churn(lines, settings, partition_of, progress=progress, triggers=rules)
    profiles = replayed.profiles
    groups = settings.fairness_groups
    as_of = max((p.last_seen for p in profiles.values()), default=None)
    scored = [
        (e.profile_id, p, e.label)
        for e, p in zip(replayed.examples, replayed.predictions, strict=True)
    ]
    subjects = [
        subject_report(
            "model",
            "churn",
            f"churn score >= {SELECTED_AT} (at risk)",
            churn_outcomes(scored, profiles, groups),
        )
    ]
    summaries = [s for p in profiles.values() if (s := OrderSummary.of(p)) is not None]
    clv = refit(summaries, as_of, None) if as_of is not None else None
    if clv is not None and as_of is not None:
        outcomes = clv_outcomes(profiles, clv, as_of, settings.clv_horizon_days, groups)
        subjects.append(subject_report("model", "clv", "expected value in the top fifth", outcomes))
    fired = rule_outcomes(replayed.firings, [r.name for r in rules.rules], profiles, groups)
    for rule, outcomes in fired.items():
        subjects.append(subject_report("rule", rule, "fired (a message sent)", outcomes))
    return fairness_report("the replayed file's customers", as_of, subjects)
