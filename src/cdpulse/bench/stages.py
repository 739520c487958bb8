"""Where a worker's time goes: the profile pipeline's stages, timed in-process.

The backlog's first messages are cut into batches of the worker's batch size and handed
to the worker's own ``ProfilePipeline`` (built by ``create_worker``, so with every stage
the worker runs) over the real Redis under its own key prefix and a real ``KafkaOutlet``
publishing to the phase's own topics, without faust's consumer. Each stage is timed
where it is called, on the wall clock and on this process's CPU clock:

* ``decode``: ``decode_batch``, bytes to events (the msgspec mirror), dead letters;
* ``state.read`` and ``state.write``: ``RedisState``'s one read and one write per batch,
  of which the MessagePack decode and encode of profiles are shown apart;
* ``stages``: ``Stages.one`` over every profile the batch touches (merge, apply, churn,
  segments, triggers, experiments, item events, summaries), of which the profile rules
  (``rules.apply``, ``rules.merge``) and campaign response's exposures and labels
  (``campaign.observe``, ``campaign.decide``) are shown apart;
* ``outlet.publish``: the batch's records as record batches, awaited (acks=all);
* ``rest of the pipeline``: stitching, grouping, the report, the watermarks.

The pipeline owns every input partition, so it also loads and decides the profiles whose
churn label or trigger its events made due, as a live worker does.

On the compiled build (``make compiled``; what ``make bench`` runs) ``stages`` is timed
whole: mypyc's native code calls its parts directly, so they cannot be timed apart. The
pure build's bench (``.venv/bin/cdpulse bench``) shows them.

Redis' own CPU over the phase comes from ``INFO commandstats``. The difference between
this rate and a worker's is what faust's consumer path, commits and timers cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis as sync_redis
from kafka.partitioner.default import murmur2
from prometheus_client import REGISTRY

from cdpulse.bench.workload import Record, Workload, topic_of
from cdpulse.contract.message import Message
from cdpulse.contract.topics import Topics
from cdpulse.pipeline import batch
from cdpulse.pipeline import stages as stage_functions
from cdpulse.profile import send_hours
from cdpulse.settings import Settings
from cdpulse.store import state as state_store

if TYPE_CHECKING:
    from cdpulse.bench.driver import BenchRun


class _Clock:
    """Wall seconds, CPU seconds (this process) and calls per stage name.

    CPU time is what a loaded machine does not inflate; wall time also holds the
    waits for Redis. Reading the two clocks costs about a microsecond per timed call;
    ``overhead`` measures that cost so the report can take it out of the remainder.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def reset(self) -> None:
        """Forget what was timed so far (the warm-up): the wrappers keep these dicts."""
        for times in (self.seconds, self.cpu, self.calls):
            times.clear()

    def wrap(self, function: Callable[..., Any], stage: str) -> Callable[..., Any]:
        """``function`` (sync or async), timed as ``stage``."""
        seconds, cpu, calls = self.seconds, self.cpu, self.calls
        wall_clock, cpu_clock = time.perf_counter, time.process_time
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                wall, used = wall_clock(), cpu_clock()
                try:
                    return await function(*args, **kwargs)
                finally:
                    seconds[stage] += wall_clock() - wall
                    cpu[stage] += cpu_clock() - used
                    calls[stage] += 1

            return timed_async

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, used = wall_clock(), cpu_clock()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[stage] += wall_clock() - wall
                cpu[stage] += cpu_clock() - used
                calls[stage] += 1

        return timed

    @staticmethod
    def overhead(rounds: int = 20_000) -> tuple[float, float]:
        """(wall, CPU) seconds one timed call of a no-op costs on top of the call itself."""

        def bare() -> None:
            return None

        timed = _Clock().wrap(bare, "probe")
        wall, used = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            timed()
        timed_wall, timed_cpu = time.perf_counter() - wall, time.process_time() - used
        wall, used = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            bare()
        bare_wall, bare_cpu = time.perf_counter() - wall, time.process_time() - used
        return (
            max(0.0, timed_wall - bare_wall) / rounds,
            max(0.0, timed_cpu - bare_cpu) / rounds,
        )


class Timed:
    """A stand-in for ``inner`` that times every method call as ``<label>.<method>``."""

    def __init__(self, inner: Any, clock: _Clock, label: str) -> None:
        self._inner = inner
        self._clock = clock
        self._label = label

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.ismethod(attr):
            return attr
        timed = self._clock.wrap(attr, f"{self._label}.{name}")
        # Kept, so the next lookup finds it without coming here again.
        self.__dict__[name] = timed
        return timed


def compiled() -> bool:
    """Whether the installed cdpulse is the build mypyc compiled (setup.py).

    The one test of it, for the bench's record of what ran (``driver.source``) and for
    the split, which cannot swap the parts of native classes for timed stand-ins.
    """
    return not (stage_functions.__file__ or "").endswith(".py")


class _TimedOne:
    """The pipeline's ``Stages``, its ``one`` timed as ``stages`` (the native build)."""

    def __init__(self, inner: Any, clock: _Clock) -> None:
        self._inner = inner
        self.one = clock.wrap(inner.one, "stages")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def _timed_functions(module: Any, stages: dict[str, str], clock: _Clock) -> Iterator[None]:
    """Time calls of ``module``'s functions ``{name: stage}`` made through its namespace.

    Only the module's own names are swapped, and only for the run: a caller that
    imported a function by name (as the batch processor and the store do) gets the
    timed one; nothing outside this process changes.
    """
    names = vars(module)
    originals: dict[str, Callable[..., Any]] = {name: names[name] for name in stages}
    for name, stage in stages.items():
        names[name] = clock.wrap(originals[name], stage)
    try:
        yield
    finally:
        names.update(originals)


def messages_of(records: Sequence[Record], topics: Topics, partitions: int) -> list[Message]:
    """The records as a consumer would see them: a partition by key, offsets in order."""
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    out: list[Message] = []
    now = time.time()
    for record in records:
        topic = topic_of(topics, record.stream)
        partition = (murmur2(record.key) & 0x7FFFFFFF) % partitions  # Kafka's default
        offset = offsets[(topic, partition)]
        offsets[(topic, partition)] = offset + 1
        out.append(Message(topic, partition, offset, record.key, record.value, now))
    return out


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Seconds per stage over ``events`` events, and the whole in-process rate."""

    events: int
    batches: int
    seconds: float
    cpu_seconds: float
    stages: dict[str, float]  # stage -> wall seconds, adding up to ``seconds``
    stages_cpu: dict[str, float]  # stage -> CPU seconds, adding up to ``cpu_seconds``
    detail: dict[str, float]  # parts of stages (round trips, msgpack, Redis CPU) -> seconds
    calls: dict[str, int]
    compiled: bool  # the stages are mypyc's native code: timed whole, without their parts

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def per_event_us(self) -> dict[str, float]:
        """Wall microseconds per event, per stage and per detail."""
        return {k: v / self.events * 1e6 for k, v in {**self.stages, **self.detail}.items()}

    def per_event_cpu_us(self) -> dict[str, float]:
        """CPU microseconds per event, per stage."""
        return {k: v / self.events * 1e6 for k, v in self.stages_cpu.items()}


def _redis_seconds_sum(op: str) -> float:
    return REGISTRY.get_sample_value("cdpulse_redis_seconds_sum", {"op": op}) or 0.0


# The stages' parts timed on their own, each a line of the split (issue 13 asks for the
# per-event cost of each prediction's stage): functions the stages call through their
# module's namespace, and the collaborators (campaign labeler, KPI fold) they hold.
_STAGE_FUNCTIONS = {
    "apply_new": "rules.apply",
    "merge": "rules.merge",
    "observe_open": "send_time.observe_open",
    "observe_order": "next_purchase.observe_order",
}
_SEND_HOURS_FUNCTIONS = {
    "add": "send_hours.add",
    "note_offset": "send_hours.note_offset",
    "prune": "send_hours.prune",
}
_IN_STAGES = (
    *_STAGE_FUNCTIONS.values(),
    "campaign.observe",
    "campaign.decide",
    "personas.decide",
    "kpis.observe",
    "kpis.merge",
)


def _commandstats_usec(client: sync_redis.Redis) -> dict[str, float]:
    stats: dict[str, Any] = client.info("commandstats")
    return {name: float(value["usec"]) for name, value in stats.items()}


async def _time_stages(
    settings: Settings,
    messages: list[Message],
    batch_size: int,
    warm: Sequence[Message],
    timing: Callable[[], None],
) -> tuple[float, float, _Clock, int, bool]:
    from aiokafka import AIOKafkaProducer

    from cdpulse.app.outlet import KafkaOutlet
    from cdpulse.app.worker import create_worker, output_topics

    clock = _Clock()
    _, worker = create_worker(settings)
    pipeline = worker.pipeline
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap.split(","), acks="all")
    await producer.start()
    outlet = KafkaOutlet(_AppOf(producer), output_topics(Topics.from_settings(settings)))  # type: ignore[arg-type]
    # Swap the pipeline's collaborators for timed stand-ins (instance attributes only).
    slots = vars(pipeline)
    slots["state"] = Timed(pipeline.state, clock, "state")
    slots["outlet"] = Timed(outlet, clock, "outlet")
    if pipeline.sharding is not None:
        # Without a consumer the worker owns no partition and polls nothing due; a worker
        # owning all of them decides what its events made due, as the live one does (on
        # the bench's shop ~0.14 due profiles per event, a tenth or more of the work).
        every = tuple(range(settings.topic_partitions))
        slots["sharding"] = batch.Sharding(lambda: every, pipeline.sharding.shard_of)
    native = compiled()
    if native:
        # Compiled by mypyc (setup.py), the stages are a native class whose methods and
        # module functions call each other directly: no part of them can be swapped for a
        # timed stand-in, so they are timed whole, from the pipeline's side.
        slots["stages"] = _TimedOne(pipeline.stages, clock)
    else:
        vars(pipeline.stages)["one"] = clock.wrap(pipeline.stages.one, "stages")
        for part in ("campaign", "personas", "kpis"):
            if getattr(pipeline.stages, part) is not None:
                vars(pipeline.stages)[part] = Timed(getattr(pipeline.stages, part), clock, part)
    await worker.state.load_scripts()
    batches = 0
    try:
        # Untimed: the profiles grow to what the timed events find (a customer's later
        # events cost more than their first: a fuller profile to apply, encode and write).
        for i in range(0, len(warm), batch_size):
            await pipeline.run(list(warm[i : i + batch_size]))
        clock.reset()
        timing()
        started, cpu = time.perf_counter(), time.process_time()
        with (
            _timed_functions(
                state_store, {"encode": "msgpack encode", "decode": "msgpack decode"}, clock
            ),
            _timed_functions(stage_functions, {} if native else _STAGE_FUNCTIONS, clock),
            _timed_functions(send_hours, {} if native else _SEND_HOURS_FUNCTIONS, clock),
            _timed_functions(batch, {"decode_batch": "decode"}, clock),
        ):
            for i in range(0, len(messages), batch_size):
                await pipeline.run(messages[i : i + batch_size])
                batches += 1
        return time.perf_counter() - started, time.process_time() - cpu, clock, batches, native
    finally:
        await producer.stop()
        await worker.state.client.aclose()


def time_stages(
    settings: Settings, messages: list[Message], batch_size: int, warm: Sequence[Message] = ()
) -> StageTimes:
    """Run ``messages`` through the worker's processor, timed, in batches of ``batch_size``
    (after ``warm``, untimed)."""
    client = sync_redis.Redis.from_url(settings.redis_url)
    try:
        state: dict[str, Any] = {}

        def before() -> None:  # once the warm-up is done: only the timed part counts
            state["usec"] = _commandstats_usec(client)
            state["round_trips"] = {op: _redis_seconds_sum(op) for op in ("read", "write")}

        total, cpu, clock, batches, native = asyncio.run(
            _time_stages(settings, messages, batch_size, warm, before)
        )
        usec_before, round_trips_before = state["usec"], state["round_trips"]
        usec_after = _commandstats_usec(client)
    finally:
        client.close()
    names = [
        n for n in clock.seconds if n in ("decode", "stages") or n.startswith(("state.", "outlet."))
    ]
    # What reading the clocks cost: taken out of the remainder and shown as its own line.
    wall_each, cpu_each = _Clock.overhead()
    timed_calls = sum(clock.calls.values())
    stages = {name: clock.seconds[name] for name in names}
    stages["timer overhead"] = wall_each * timed_calls
    stages["rest of the pipeline"] = total - sum(stages.values())
    stages_cpu = {name: clock.cpu[name] for name in names}
    stages_cpu["timer overhead"] = cpu_each * timed_calls
    stages_cpu["rest of the pipeline"] = cpu - sum(stages_cpu.values())
    detail = {
        f"{op}: pipelined round trip": _redis_seconds_sum(op) - before
        for op, before in round_trips_before.items()
    }
    if not native:
        for name in _IN_STAGES:
            detail[f"{name} (in stages)"] = clock.seconds.get(name, 0.0)
        # The send-hour fold runs inside rules.apply (every event notes its UTC offset).
        detail["send_time.fold (in rules.apply)"] = sum(
            clock.seconds.get(name, 0.0) for name in _SEND_HOURS_FUNCTIONS.values()
        )
    detail["msgpack decode (in read)"] = clock.seconds.get("msgpack decode", 0.0)
    detail["msgpack encode (in write)"] = clock.seconds.get("msgpack encode", 0.0)
    detail["redis server CPU (all commands)"] = (
        sum(usec_after.values()) - sum(usec_before.values())
    ) / 1e6
    return StageTimes(
        len(messages), batches, total, cpu, stages, stages_cpu, detail, dict(clock.calls), native
    )


class _AppOf:
    """What ``KafkaOutlet`` asks of a faust app: its producer's aiokafka client."""

    def __init__(self, client: Any) -> None:
        self.producer = self
        self._client = client

    def _ensure_producer(self) -> Any:
        return self._client


def measure_stages(run: BenchRun, workload: Workload) -> dict[str, Any]:
    """The pipeline's stages over ``stage_events`` events, timed after the backlog's events
    went through untimed: the profiles are as grown as in the steady phases."""
    from cdpulse.bench.driver import say
    from cdpulse.kafka_admin import ensure_topics

    o = run.options
    end = min(o.events + o.stage_events, len(workload.records))
    count = end - o.events
    say(
        f"stages: the profile pipeline in-process over {count:,} events, after the "
        f"backlog's {o.events:,} untimed"
    )
    settings = run.phase_settings("stages")
    run.prefixes.append(settings.redis_prefix)
    ensure_topics(settings)
    messages = messages_of(workload.records[:end], run.topics, o.partitions)
    times = time_stages(
        settings, messages[o.events :], run.base.batch_size, warm=messages[: o.events]
    )
    say(f"stages: {times.events_per_second:,.0f} events/s in-process")
    return {
        "warm_events": o.events,
        "events": times.events,
        "batches": times.batches,
        "seconds": times.seconds,
        "cpu_seconds": times.cpu_seconds,
        "events_per_second": times.events_per_second,
        "cpu_seconds_per_1000": times.cpu_seconds / times.events * 1000,
        "stages_seconds": times.stages,
        "detail_seconds": times.detail,
        "calls": times.calls,
        "compiled": times.compiled,
        "per_event_us": times.per_event_us(),
        "per_event_cpu_us": times.per_event_cpu_us(),
    }
