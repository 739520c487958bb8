"""``cdpulse rebuild``: the input topics' history replayed through the profile pipeline
into an empty Redis key prefix (``rebuild``)."""
