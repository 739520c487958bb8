"""``cdpulse bench``: the engine measured on real Kafka, Redis and worker processes.

``driver`` runs the phases; ``workload`` makes and sends the events; ``workers``,
``sampler`` and ``offsets`` watch the workers; ``ceiling`` is the bare consumer;
``http_load`` the open-loop reader; ``stages`` times the batch processor in-process;
``redis_memory`` weighs profiles; ``stats`` holds the arithmetic; ``report`` and
``chart`` render a result. ``framework`` (``python -m cdpulse.bench.framework``) times
faust's own cost per message, stock against ``cdpulse.adapters.kafka``.
"""
