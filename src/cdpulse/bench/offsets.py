"""How far a consumer group has got: its committed offsets against the topics' ends."""

from __future__ import annotations

from types import TracebackType

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError


class Offsets:
    """End offsets of topics and committed offsets of groups, over one pair of clients."""

    def __init__(self, bootstrap: str) -> None:
        servers = bootstrap.split(",")
        self._admin = KafkaAdminClient(bootstrap_servers=servers, client_id="cdpulse-bench")
        self._consumer = KafkaConsumer(bootstrap_servers=servers, client_id="cdpulse-bench")

    def partitions(self, topics: list[str]) -> list[TopicPartition]:
        out: list[TopicPartition] = []
        for topic in topics:
            ids = self._consumer.partitions_for_topic(topic) or set()
            out += [TopicPartition(topic, p) for p in sorted(ids)]
        return out

    def ends(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: int(end) for tp, end in self._consumer.end_offsets(partitions).items()}

    def committed(self, group: str, ends: dict[TopicPartition, int]) -> int:
        """Messages the group has committed, over the partitions in ``ends``.

        A group the coordinator does not know yet (or not yet ready) has committed 0.
        """
        try:
            offsets = self._admin.list_group_offsets(group).get(group, {})
        except KafkaError:
            return 0
        total = 0
        for tp, end in ends.items():
            meta = offsets.get(tp)
            if meta is not None and meta.offset > 0:
                total += min(int(meta.offset), end)
        return total

    def members(self, group: str) -> tuple[str, int]:
        """The group's state (``Stable`` once a rebalance is over) and its member count."""
        try:
            found = self._admin.describe_groups([group]).get(group) or {}
        except KafkaError:
            return "unknown", 0
        state = str(found.get("group_state") or found.get("state") or "unknown")
        return state, len(found.get("members") or [])

    def lag(self, group: str, topics: list[str]) -> dict[str, int]:
        """Messages of each topic that ``group`` has not committed yet (topic end - committed).

        A topic that does not exist yet is left out; a group that has committed nothing
        lags by the whole topic.
        """
        partitions = self.partitions(topics)
        if not partitions:
            return {}
        ends = self.ends(partitions)
        try:
            offsets = self._admin.list_group_offsets(group).get(group, {})
        except KafkaError:
            offsets = {}
        lag: dict[str, int] = {}
        for tp, end in ends.items():
            meta = offsets.get(tp)
            done = min(int(meta.offset), end) if meta is not None and meta.offset > 0 else 0
            lag[tp.topic] = lag.get(tp.topic, 0) + end - done
        return lag

    def close(self) -> None:
        self._admin.close()
        self._consumer.close()

    def __enter__(self) -> Offsets:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
