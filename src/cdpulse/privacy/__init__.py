"""Privacy by construction: pseudonyms, trait allow-list, consent, erasure, data keys.

Everything here is pure (no I/O): ``pseudonyms``, ``traits`` and ``consent`` run inside
the profile rules; ``ledger``, ``erasure``, ``data_keys`` and ``identities`` say what the
erasure ledger, the audit record, the sealing of personal traits and the identity index
are. What keeps them in Redis lives in ``store/`` (``ledger``, ``erasure``, ``data_keys``,
``identities``, ``export``), wired in by the roles; the worker also publishes the ledger
to its Kafka topic (``pipeline.batch``), which ``ingest.ledger`` loads back into Redis.
"""
