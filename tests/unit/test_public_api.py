"""The public surfaces of segments and experiments change only on purpose."""

from __future__ import annotations

import cdpulse.experiments as experiments
import cdpulse.segments as segments


def test_segments_public_api() -> None:
    assert sorted(segments.__all__) == [
        "Decision",
        "DefinitionError",
        "RFM_SEGMENTS",
        "SegmentBook",
        "Transition",
        "changes",
        "decide",
        "enter",
        "load_book",
        "parse",
        "rfm_moves",
    ]
    t = segments.Transition("C-1", "at_risk", True, 1_000, 1)
    assert (t.customer_id, t.segment, t.entered, t.at_ms, t.id) == (
        "C-1",
        "at_risk",
        True,
        1_000,
        "C-1:at_risk:1",
    )


def test_experiments_public_api() -> None:
    assert sorted(experiments.__all__) == [
        "Arm",
        "Comparison",
        "Experiment",
        "experiments",
        "report",
        "variant",
    ]
