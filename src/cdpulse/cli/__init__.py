"""The ``cdpulse`` command line."""
