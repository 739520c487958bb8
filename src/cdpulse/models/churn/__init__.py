"""Churn risk: features of a day, delayed labels in event time, the learner and scoring."""
