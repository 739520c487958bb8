"""The customer profile: its data, its update rules, its windows, its Redis store."""
