"""The Faust app: agents and web views, wiring the core to Kafka, Redis and HTTP."""
