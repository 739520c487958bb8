"""cdpulse: a real-time customer-data and personalization engine.

Producers publish events to Kafka; Faust workers keep an exact rolling profile
per customer in Redis; downstream services read profiles over HTTP.
"""

__version__ = "0.1.0"
