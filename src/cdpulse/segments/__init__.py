"""Segments: RFM quintile segments and custom CEL segments, evaluated on profile changes.

The public surface other parts use (triggers wire ``Transition`` to their rules)::

    tracker = SegmentTracker(book, rules, store, sketches)
    batch = await tracker.evaluate(saved_profiles)   # -> Batch(transitions, errors)
    for t in batch.transitions:                      # Transition(customer_id, segment,
        ...                                          #   entered, at_ms, generation); t.id
"""

from cdpulse.segments.definitions import DefinitionError, SegmentBook, load_book, parse
from cdpulse.segments.membership import Transition
from cdpulse.segments.rfm import SEGMENTS as RFM_SEGMENTS
from cdpulse.segments.tracker import Batch, SegmentTracker

__all__ = [
    "RFM_SEGMENTS",
    "Batch",
    "DefinitionError",
    "SegmentBook",
    "SegmentTracker",
    "Transition",
    "load_book",
    "parse",
]
