"""A churn crossing scored by a degraded model (issue 14, gating): each rule's on_degraded
(suppress, hold, fallback) decides what it does, in event time, through the engine."""

from __future__ import annotations

from typing import Any

import pytest

from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules
from cdpulse.profile.watch import Watch
from cdpulse.settings import Settings
from cdpulse.triggers.decide import GATED_KEPT, Decision
from cdpulse.triggers.engine import TriggerEngine
from cdpulse.triggers.rules import HOUR, TriggerConfig

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DEGRADED = ["live AUC 0.52 below the floor 0.60"]


def engine(**churn: Any) -> TriggerEngine:
    rule = {"name": "churn", "kind": "churn_risk", "threshold": 0.7, "cooldown_hours": 0}
    rule |= {"marketing": False} | churn
    config = TriggerConfig.model_validate({"rules": [rule]})
    return TriggerEngine(config, session_gap=HOUR, rules=Rules.from_settings(Settings()))


def scores(
    engine: TriggerEngine, steps: list[tuple[float, bool, int]]
) -> tuple[Profile, list[list[Decision]]]:
    """Each (risk, scored by a degraded model, orders) written an hour apart, and what the
    watermark passing it decided."""
    profile = Profile(id="C-1", customer_id="C-1", last_seen=T0, watch=Watch())
    out = []
    for i, (risk, degraded, orders) in enumerate(steps):
        profile.last_seen = T0 + i * HOUR
        profile.churn_risk, profile.churn_version = risk, i + 1
        profile.churn_degraded = list(DEGRADED) if degraded else []
        profile.orders = orders
        engine.after_profile(profile)
        expired, _ = engine.decide_due(profile, profile.last_seen + 1)
        out.append(expired.decisions)
    return profile, out


def outcomes(decided: list[list[Decision]]) -> list[list[tuple[str, str]]]:
    return [[(d.outcome, d.model_gate) for d in step] for step in decided]


def test_suppress_drops_the_crossing_and_only_a_new_crossing_fires() -> None:
    profile, decided = scores(
        engine(on_degraded="suppress"),
        [(0.8, True, 0), (0.9, False, 0), (0.3, False, 0), (0.8, False, 0)],
    )
    assert outcomes(decided) == [[("suppressed", "suppress")], [], [], [("fired", "")]]
    assert profile.watch is not None
    [(rule, at, action, reason)] = profile.watch.model_gated
    assert (rule, at, action) == ("churn", T0, "suppress")
    assert reason == f"churn model degraded: {DEGRADED[0]}"


def test_hold_decides_again_at_the_next_score_and_fires_once_the_model_recovers() -> None:
    profile, decided = scores(
        engine(on_degraded="hold"),
        [(0.8, True, 0), (0.85, True, 0), (0.9, False, 0), (0.95, False, 0)],
    )
    assert outcomes(decided) == [[("held", "hold")], [("held", "hold")], [("fired", "")], []]
    assert profile.watch is not None
    assert [e[2] for e in profile.watch.model_gated] == ["hold", "hold"]
    # A held crossing the recovered model scores below the threshold fires nothing.
    _, decided = scores(engine(on_degraded="hold"), [(0.8, True, 0), (0.5, False, 0)])
    assert outcomes(decided) == [[("held", "hold")], []]


def test_fallback_decides_by_its_condition_while_the_model_is_degraded() -> None:
    rule = engine(on_degraded="fallback", fallback="orders >= 2")
    profile, decided = scores(
        rule,
        [
            (0.9, True, 0),  # the score crosses, the condition does not hold: nothing
            (0.9, True, 3),  # the condition turns true: the situation, fired
            (0.1, True, 4),  # still true: no new situation, whatever the score
            (0.9, False, 4),  # recovered, already crossed by the fallback: nothing
        ],
    )
    assert outcomes(decided) == [[], [("fired", "fallback")], [], []]
    fired = decided[1][0]
    assert fired.pending.fallback and fired.pending.degraded == DEGRADED
    assert fired.pending.reasons == ["churn model degraded; fallback orders >= 2 holds"]
    assert profile.watch is not None and [e[2] for e in profile.watch.model_gated] == ["fallback"]


@pytest.mark.parametrize("mode", ["suppress", "hold"])
def test_a_model_not_degraded_or_a_rule_not_gated_by_it_fires_as_before(mode: str) -> None:
    _, decided = scores(engine(on_degraded=mode), [(0.8, False, 0)])
    assert outcomes(decided) == [[("fired", "")]]
    _, decided = scores(engine(on_degraded=mode, gated_by=[]), [(0.8, True, 0)])
    assert outcomes(decided) == [[("fired", "")]]


def test_the_watch_keeps_the_newest_model_gated_situations_only() -> None:
    steps = [(0.8, True, 0)] * (GATED_KEPT + 5)
    profile, decided = scores(engine(on_degraded="hold"), steps)
    assert sum(len(step) for step in decided) == len(steps)  # every one decided, counted
    assert profile.watch is not None
    kept = [at for _, at, _, _ in profile.watch.model_gated]
    assert kept == [T0 + i * HOUR for i in range(len(steps))][-GATED_KEPT:]


@pytest.mark.parametrize(
    ("churn", "problem"),
    [
        ({"on_degraded": "fallback"}, "set both, or neither"),
        ({"on_degraded": "hold", "fallback": "orders > 1"}, "set both, or neither"),
        ({"on_degraded": "fallback", "fallback": "orders >"}, "rule 'churn', fallback:"),
    ],
)
def test_a_fallback_needs_its_mode_and_a_valid_condition(
    churn: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        engine(**churn)
