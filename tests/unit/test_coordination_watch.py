"""The coordination watch's decisions, on states alone (``adapters/kafka/coordination.py``)."""

from __future__ import annotations

from cdpulse.adapters.kafka.coordination import CoordinationState, CoordinationWatch, Remedy

STALL = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def state(**changes: bool) -> CoordinationState:
    healthy = {
        "metadata_ended": False,
        "coordination_ended": False,
        "error_unread": False,
        "coordinator_known": True,
        "subscribed": True,
    }
    return CoordinationState(**{**healthy, **changes})


def watch() -> tuple[CoordinationWatch, Clock]:
    clock = Clock()
    return CoordinationWatch(STALL, clock), clock


def test_healthy_coordination_needs_nothing() -> None:
    w, clock = watch()
    for _ in range(100):
        clock.now += 5
        assert w.check(state()) == []
    assert not w.repairs


def test_tasks_that_ended_are_restarted_at_the_first_check_in_order() -> None:
    w, _ = watch()
    ended = state(metadata_ended=True, coordination_ended=True, error_unread=True)
    assert w.check(ended) == [
        Remedy.RESTART_METADATA,
        Remedy.RESTART_COORDINATION,
        Remedy.RELEASE_ERROR,
    ]
    assert w.check(state(coordination_ended=True)) == [Remedy.RESTART_COORDINATION]
    assert w.repairs == {
        Remedy.RESTART_METADATA: 1,
        Remedy.RESTART_COORDINATION: 2,
        Remedy.RELEASE_ERROR: 1,
    }


def test_no_coordinator_is_waited_for_until_the_stall_then_the_broker_is_asked() -> None:
    w, clock = watch()
    unknown = state(coordinator_known=False)
    assert w.check(unknown) == []
    clock.now = STALL - 1
    assert w.check(unknown) == []
    clock.now = STALL
    assert w.check(unknown) == [Remedy.PROBE_COORDINATOR]


def test_a_broker_that_names_no_coordinator_is_waited_for_however_long() -> None:
    w, clock = watch()
    unknown = state(coordinator_known=False)
    w.check(unknown)
    for _ in range(50):
        clock.now += STALL
        assert w.check(unknown) == [Remedy.PROBE_COORDINATOR]
        w.probed(False)
    assert not w.repairs


def test_a_coordinator_the_broker_named_but_the_routine_did_not_find_means_a_reset() -> None:
    w, clock = watch()
    unknown = state(coordinator_known=False)
    w.check(unknown)
    clock.now = STALL
    assert w.check(unknown) == [Remedy.PROBE_COORDINATOR]
    w.probed(True)
    clock.now += 5
    assert w.check(unknown) == [Remedy.RESET_COORDINATION]
    # Another stall before the broker is asked again.
    clock.now += STALL - 1
    assert w.check(unknown) == []
    clock.now += 1
    assert w.check(unknown) == [Remedy.PROBE_COORDINATOR]
    assert w.repairs == {Remedy.RESET_COORDINATION: 1}


def test_a_coordinator_found_after_the_probe_cancels_the_reset() -> None:
    w, clock = watch()
    unknown = state(coordinator_known=False)
    w.check(unknown)
    clock.now = STALL
    w.check(unknown)
    w.probed(True)
    assert w.check(state()) == []
    clock.now += 5
    assert w.check(unknown) == []  # a new stall begins
    assert not w.repairs


def test_no_coordinator_before_a_subscription_is_no_stall() -> None:
    w, clock = watch()
    for _ in range(10):
        clock.now += STALL
        assert w.check(state(coordinator_known=False, subscribed=False)) == []


def test_the_stall_runs_on_while_ended_tasks_are_restarted() -> None:
    w, clock = watch()
    w.check(state(coordinator_known=False))
    clock.now = STALL
    assert w.check(state(coordinator_known=False, metadata_ended=True)) == [Remedy.RESTART_METADATA]
    clock.now += 5
    assert w.check(state(coordinator_known=False)) == [Remedy.PROBE_COORDINATOR]
