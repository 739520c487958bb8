"""Redis: the pipeline's state store (``state``, with its Lua scripts) and profile cache,
profile reads, model snapshots, erasure and export, data keys, the identity index, the
erasure ledger, segment, experiment and trigger counters, key names. The pipeline's
in-memory state store is ``pipeline.memory``."""
