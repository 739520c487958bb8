"""Segment sizes per day from transitions: each counted once, sizes carried across days."""

from __future__ import annotations

from cdpulse.app.segment_history import SegmentHistory
from cdpulse.kpis.fields import epoch_day
from cdpulse.segments.membership import Transition

DAY = 86_400_000


def test_sizes_are_entries_minus_exits_up_to_each_day_each_transition_once() -> None:
    history = SegmentHistory("segments", {})
    start = epoch_day("2026-01-01")
    changes = [
        Transition("C-1", "vip", True, start * DAY + 5, 1),
        Transition("C-2", "vip", True, (start + 2) * DAY, 1),
        Transition("C-1", "vip", False, (start + 3) * DAY + 1, 2),
        Transition("C-1", "vip", True, (start + 3) * DAY + 2, 3),
        Transition("C-2", "vip", False, (start + 4) * DAY, 2),
    ]
    for change in [*changes, changes[1], changes[2]]:  # two published again
        history._count(change.to_json())
    history._count(b"{not json")
    history._count(b'{"segment": "vip"}')
    days = list(range(start + 1, start + 6))
    assert history.sizes(["vip", "new"], days) == {"vip": [1, 2, 2, 1, 1], "new": [0] * 5}
    assert history.unreadable == 2
