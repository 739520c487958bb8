"""A faust worker on the batch consumer path that records what its agent handled.

Run by ``test_kafka_adapter.py`` as ``python -m tests.integration.batch_agent``. Its
environment (``BATCH_AGENT_*``) says where the broker, topic and group are
(``BOOTSTRAP``, ``TOPIC``, ``GROUP``), where faust keeps its data (``DATADIR``), where
each handled batch goes as a JSON line (``HANDLED``), and which message's batch raises
once (``POISON``, "partition:offset"; ``POISONED`` is the file recording that it did),
and how long handling a batch takes (``PAUSE``, seconds; 0 by default).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from faust.worker import Worker

from cdpulse.adapters.kafka import faust_app
from cdpulse.app.worker import _committed_only_if_handled


def main() -> None:
    env = os.environ
    handled = Path(env["BATCH_AGENT_HANDLED"])
    poisoned = Path(env["BATCH_AGENT_POISONED"])
    poison = (
        tuple(int(x) for x in env["BATCH_AGENT_POISON"].split(":"))
        if env.get("BATCH_AGENT_POISON")
        else None
    )
    pause = float(env.get("BATCH_AGENT_PAUSE", "0"))
    app = faust_app(
        env["BATCH_AGENT_GROUP"],
        broker=f"kafka://{env['BATCH_AGENT_BOOTSTRAP']}",
        store="memory://",
        datadir=env["BATCH_AGENT_DATADIR"],
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.5,
        stream_wait_empty=False,
        # As the roles fetch (Settings' defaults): the broker holds a fetch for 64 KB.
        fetch_min_bytes=64 * 1024,
        fetch_max_wait=0.02,
    )
    topic = app.topic(env["BATCH_AGENT_TOPIC"], key_type=bytes, value_type=bytes)

    @app.agent(topic, concurrency=1)
    async def handle(stream: Any) -> None:
        async for events in stream.take_events(300, within=0.05):
            with _committed_only_if_handled(events):
                offsets = [[e.message.partition, e.message.offset] for e in events]
                if poison in {tuple(o) for o in offsets} and not poisoned.exists():
                    poisoned.write_text(json.dumps(offsets))
                    raise RuntimeError("poisoned batch: its handling raised")
                await asyncio.sleep(pause)
                with handled.open("a") as out:
                    out.write(json.dumps(offsets) + "\n")

    Worker(app, loglevel="info").execute_from_commandline()


if __name__ == "__main__":
    main()
