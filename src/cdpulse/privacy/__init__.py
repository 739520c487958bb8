"""Privacy by construction: pseudonyms, trait allow-list, consent, erasure, data keys.

The pure parts (``pseudonyms``, ``traits``, ``consent``) import no I/O and run inside the
profile rules; the parts that touch Redis or Kafka (``ledger``, ``erasure``,
``data_keys``, ``export``) are adapters the worker wires in.
"""
