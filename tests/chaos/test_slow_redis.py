"""Redis answers slowly (a proxy adds a round-trip delay): lag grows, memory does not.

The worker falls behind a burst while every Redis round trip costs a second more; its
consumer lag grows while its resident memory stays bounded (it must not buffer the
backlog). Once the delay is gone it drains, and the profiles are exact.
"""

from __future__ import annotations

import time

from tests.chaos.conftest import moved, scaled
from tests.chaos.latency_proxy import LatencyProxy
from tests.chaos.observe import alive, metric, rss_bytes
from tests.chaos.state import assert_exact
from tests.chaos.stream import Outgoing, Sender, shop_stream, truth_of
from tests.integration.conftest import REDIS_PORT, Env, wait_drained, wait_until

MB = 1024 * 1024
# What the worker may add to its memory while behind: faust's fetch and stream buffers,
# not the backlog (which is larger). Measured from a worker that has warmed up, since a
# worker's memory also grows with the work it has done (profiles seen, models, allocator).
GROWTH_LIMIT = 64 * MB
# A batch costs two Redis round trips (one read, one write): with a second each, a worker
# applies at most ~250 events/s in batches of 500, well behind what the sender produces
# (about 1,000 of these heavy events/s here).
SLOW_RTT = 1.0


def send(env: Env, messages: list[Outgoing]) -> Sender:
    sender = Sender(env.settings, messages)
    sender.start()
    return sender


def test_slow_redis_builds_lag_in_bounded_memory_then_drains(env: Env) -> None:
    proxy = LatencyProxy("127.0.0.1", REDIS_PORT)
    proxy.start()
    # The bound is the settings': a batch of these heavy events ends at BATCH_BYTES, and
    # the limit above is for batches of 4 MB. With the default's 16 MB (~2,000 of these
    # events a batch) the worker grew 92 MB here: bounded still, by a larger bound.
    slow = moved(
        env,
        CDPULSE_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
        CDPULSE_BATCH_BYTES=str(4 * MB),
    )
    try:
        # ~18k events of ~8 KB (full: ~70k of ~2.5 KB): 140 (170) MB in all.
        messages = shop_stream(
            customers=scaled(250, 1000), days=30, seed=19, padding=scaled(7500, 2000)
        )
        warm_up, burst = messages[: len(messages) // 5], messages[len(messages) // 5 :]
        worker = slow.worker()
        assert worker.process is not None
        pid = worker.process.pid
        send(slow, warm_up).finish()
        wait_drained(slow, 300, "the worker to apply the warm-up")
        baseline = rss_bytes(pid)

        proxy.rtt = SLOW_RTT
        sender = send(slow, burst)
        samples: list[tuple[float, int]] = []

        def lagging() -> bool:
            lag = metric(worker, "cdpulse_consumer_lag")
            samples.append((lag, rss_bytes(pid)))
            return lag > len(burst) / 4

        wait_until(lagging, 300, "the consumer lag to grow past a quarter of the burst")
        for _ in range(20):  # memory while it works through the backlog
            time.sleep(0.5)
            lagging()
        sender.finish()
        backlog = sum(len(m.value) for m in burst)
        assert backlog > 1.5 * GROWTH_LIMIT, "too small a backlog to tell buffering from bounds"
        grown = max(r for _, r in samples) - baseline
        assert grown < GROWTH_LIMIT, (
            f"worker memory grew {grown / MB:.0f} MB while {backlog / MB:.0f} MB waited in "
            f"Kafka; (lag, MB): {[(int(lag), r // MB) for lag, r in samples]}"
        )

        proxy.rtt = 0.0
        wait_drained(slow, 600, "the worker to drain its topics")
        assert alive(worker)
        assert_exact(slow.redis, slow.name, truth_of(messages))
    finally:
        for worker in slow.workers:
            worker.stop()
        proxy.stop()
