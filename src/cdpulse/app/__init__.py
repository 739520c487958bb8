"""The three process roles, each its own faust app (``base``): ``worker`` (the profile
agent), ``learner`` (the learners and the periodic refits) and ``api`` (the HTTP views),
wiring the core to Kafka, Redis and HTTP."""
