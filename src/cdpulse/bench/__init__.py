"""``cdpulse bench``: the engine measured on real Kafka, Redis and role processes.

``driver`` runs the phases: ``throughput`` (the ceilings, and the engine with one or
two workers beside a learner), ``steady`` (half capacity: latency, learner lag, reads),
``stages`` (the pipeline's stages in-process). Processes of their own: ``ceiling`` (the
bare consumer and the hand-written minimal profile), ``produce`` (the producer),
``http_load`` (the open-loop reader), ``roles`` (``cdpulse worker|learner|api``).
``workload`` makes the events; ``sampler``, ``offsets`` and ``procstat`` watch; ``redis_memory``
weighs profiles; ``stats`` holds the arithmetic; ``report`` and ``chart`` render a
result. ``framework`` (``python -m cdpulse.bench.framework``) times faust's own cost per
message, stock against ``cdpulse.adapters.kafka``.
"""
