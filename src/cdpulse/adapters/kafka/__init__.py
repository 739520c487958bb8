"""faust on Kafka at a framework cost of a few µs per message.

``faust_app(id, **faust_options)`` builds a faust App whose consumer delivers,
flow-controls and acks a fetched batch at a time instead of a message at a time
(``consumer``, ``conductor``, ``stream``), with commits that never pass a message
whose ack was not recorded (``offsets``), on uvloop, whose reset connections aiokafka
is taught to report as it expects (``connection``). See ``app`` for what changes.
"""

from cdpulse.adapters.kafka.app import BatchApp, BatchTransport, faust_app, use_uvloop
from cdpulse.adapters.kafka.consumer import BatchConsumer, BatchMessage
from cdpulse.adapters.kafka.offsets import PartitionOffsets
from cdpulse.adapters.kafka.stream import BatchStream

__all__ = [
    "BatchApp",
    "BatchConsumer",
    "BatchMessage",
    "BatchStream",
    "BatchTransport",
    "PartitionOffsets",
    "faust_app",
    "use_uvloop",
]
