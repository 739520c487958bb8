"""The profile pipeline: one batch of messages from one read to one write.

``batch`` runs it (decode → one read → the pure ``stages`` per profile → publish → one
write), against two ports (``ports``: the state store and the outlet) that Redis and
Kafka implement in ``store/`` and ``app/``, and dicts in ``memory`` for tests and for
``replay`` (``cdpulse evaluate``); ``cdpulse rebuild`` runs it on the Redis state store
with the memory outlet, which drops the records.
"""
