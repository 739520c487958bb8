"""Reading aiokafka's group coordination and repairing it in place, in the consumer thread.

The ways it stops with nothing to start it again, in aiokafka 0.14.0 (its line numbers):

1. The client's metadata synchronizer ends (``client.py`` 248-271): it catches nothing
   around its loop, and a request's errors other than ``KafkaError`` and ``TimeoutError``
   (303) end it, as uvloop's ``RuntimeError`` for a reset connection did in a
   reproduction (:mod:`cdpulse.adapters.kafka.connection`). The update it was resolving
   then stays pending, and ``force_metadata_update()`` hands that same future to every
   later caller (330-342). The group coordinator's lookup awaits it after a failed
   attempt (``group_coordinator.py`` 566-568, after the one "Group Coordinator Request
   failed" line) while holding ``_coordinator_lookup_lock`` (555), which the heartbeat
   (765) and every commit (995) wait for: no coordinator, no heartbeat, commits time out,
   and nothing is logged (the client holds the task, so Python never reports its error).
2. The coordination routine ends (591-602): an error other than ``KafkaError`` is logged
   once, "Unexpected error in coordinator routine", and only ``check_errors()`` would
   raise it again.
3. The coordination routine waits for the consumer to read an error
   (``_push_error_to_user``, 335-353, awaited at 655 and 687): aiokafka's ``getmany`` and
   ``getone`` call ``check_errors()``, which releases it; faust fetches from aiokafka's
   fetcher directly (``faust/transport/drivers/aiokafka.py`` ``_fetch_records``), so it
   waits until the consumer stops.

Each repair touches aiokafka's private attributes, read as they are in 0.14.0; a
consumer without them (no group, another aiokafka) is left alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka.client import CoordinationType

from cdpulse.adapters.kafka.coordination import CoordinationState, CoordinationWatch, Remedy

log = logging.getLogger(__name__)


def read_state(consumer: Any) -> CoordinationState | None:
    """The group coordination of an aiokafka ``consumer``; None when there is none to
    watch: no group coordinator, or the consumer is closing."""
    coordinator = getattr(consumer, "_coordinator", None)
    client = getattr(consumer, "_client", None)
    if coordinator is None or client is None or not hasattr(coordinator, "_coordination_task"):
        return None
    if consumer._closed or coordinator._closing.done():
        return None
    synchronizer = client._sync_task
    unread = coordinator._error_consumed_fut
    return CoordinationState(
        metadata_ended=synchronizer is not None and synchronizer.done(),
        coordination_ended=coordinator._coordination_task.done(),
        error_unread=unread is not None and not unread.done(),
        coordinator_known=coordinator.coordinator_id is not None,
        subscribed=consumer._subscription.subscription is not None,
    )


async def watch_coordination(
    consumer_of: Callable[[], Any],
    watch: CoordinationWatch,
    check_seconds: float,
    stopping: Callable[[], bool],
) -> None:
    """Check the consumer ``consumer_of()`` returns every ``check_seconds``, and repair
    what ``watch`` decides, until ``stopping()``. Runs in the consumer's own loop."""
    while not stopping():
        await asyncio.sleep(check_seconds)
        consumer = consumer_of()
        state = read_state(consumer) if consumer is not None else None
        if state is None or stopping():
            continue
        try:
            for remedy in watch.check(state):
                await repair(consumer, remedy, watch, check_seconds)
        except Exception:
            # A repair that failed is tried again at the next check; the watch goes on.
            log.exception("repairing aiokafka's group coordination failed")


async def repair(consumer: Any, remedy: Remedy, watch: CoordinationWatch, wait: float) -> None:
    """Apply ``remedy`` to ``consumer``; ``wait``: seconds a task may take to end when
    cancelled, and the probe to answer."""
    client, coordinator = consumer._client, consumer._coordinator
    if remedy is Remedy.PROBE_COORDINATOR:
        watch.probed(await _names_coordinator(client, coordinator.group_id, wait))
        return
    if remedy is Remedy.RESET_COORDINATION:
        log.warning(
            "no group coordinator for %.0f s though the broker names one: restarting "
            "aiokafka's metadata synchronizer and coordination routine",
            watch.stall_seconds,
        )
    if remedy in (Remedy.RESTART_METADATA, Remedy.RESET_COORDINATION):
        await _restart_metadata_synchronizer(client, wait)
    if remedy in (Remedy.RESTART_COORDINATION, Remedy.RESET_COORDINATION):
        await _restart_coordination(coordinator, wait)
    if remedy is Remedy.RELEASE_ERROR:
        _release_error(coordinator)


async def _names_coordinator(client: Any, group_id: str, wait: float) -> bool:
    """Whether the broker names the group's coordinator within ``wait`` seconds."""
    try:
        lookup = client.coordinator_lookup(CoordinationType.GROUP, group_id)
        return await asyncio.wait_for(lookup, wait) is not None
    except Exception as exc:  # down, not answering, no coordinator yet: all mean "wait"
        log.debug("group coordinator lookup for the watch: %r", exc)
        return False


async def _ended(task: asyncio.Task[Any], what: str, wait: float) -> bool:
    """End ``task`` (cancel it if it runs); False when it would not end in ``wait`` s."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=wait)
        if not task.done():
            log.error("aiokafka's %s did not end when cancelled; tried again later", what)
            return False
    elif not task.cancelled() and task.exception() is not None:
        log.error("aiokafka's %s had ended on %r; starting a new one", what, task.exception())
    else:
        log.error("aiokafka's %s had ended; starting a new one", what)
    return True


async def _restart_metadata_synchronizer(client: Any, wait: float) -> None:
    task = client._sync_task
    if task is not None and not await _ended(task, "metadata synchronizer", wait):
        return
    # The update awaited when it ended is still the one force_metadata_update hands out:
    # the new synchronizer must wake at once and resolve it.
    if client._md_update_fut is not None and not client._md_update_waiter.done():
        client._md_update_waiter.set_result(None)
    client._sync_task = asyncio.ensure_future(client._md_synchronizer())


async def _restart_coordination(coordinator: Any, wait: float) -> None:
    if not await _ended(coordinator._coordination_task, "coordination routine", wait):
        return
    # The heartbeat may be the task stuck holding the coordinator lookup's lock; the
    # rejoin below starts a new one either way.
    heartbeat = coordinator._heartbeat_task
    if heartbeat is not None and not heartbeat.done():
        heartbeat.cancel()
    # What the routine was doing is unknown: rejoining is the state aiokafka recovers from.
    coordinator.request_rejoin()
    coordinator._coordination_task = asyncio.ensure_future(coordinator._coordination_routine())


def _release_error(coordinator: Any) -> None:
    try:
        coordinator.check_errors()  # raises the error and releases the routine
    except Exception as exc:
        log.error(
            "aiokafka's group coordination waited for faust to read %r, which faust never "
            "does; read here, and the group is rejoined",
            exc,
        )
    # A heartbeat task that ended on this error is only replaced by a rejoin; without
    # one the routine would wait on the same error again.
    coordinator.request_rejoin()
