"""Next-best-offer: a contextual bandit picks a rule's offer; holdouts measure uplift."""
