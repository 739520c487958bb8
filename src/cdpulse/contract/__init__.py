"""The event contract: models, topics, validation and JSON Schema export."""
