"""Redis: the pipeline's state store (``state``, with its Lua scripts) and profile cache,
profile reads, model snapshots, erasure and export, data keys, the identity index, the
erasure ledger, segment, experiment and trigger counters, key names, and the ACL
allow-list of every command they send (``acl``). The pipeline's in-memory state store is
``pipeline.memory``."""
