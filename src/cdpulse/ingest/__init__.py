"""Getting events in: messages, dead letters and the batch processor."""
