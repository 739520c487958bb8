"""Adapters between cdpulse and the systems it runs on: Kafka through faust (``kafka``),
and the customers' data keys in Redis for the blocking producer (``data_keys``)."""
