"""Real-time trigger rules: situations found in the stream, decided in event time."""
