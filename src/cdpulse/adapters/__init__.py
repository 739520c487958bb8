"""Adapters between cdpulse and the systems it runs on (Kafka through faust)."""
