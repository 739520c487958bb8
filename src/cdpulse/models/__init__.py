"""Online models: features, delayed labels, churn, lifetime value, recommendations.

Pure core: nothing here imports Faust, Redis or Kafka. The worker, ``cdpulse evaluate``
and the tests run the same code.
"""
