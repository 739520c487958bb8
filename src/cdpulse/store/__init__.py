"""Where profiles live: the store interface, Redis for the worker, memory for tests."""
