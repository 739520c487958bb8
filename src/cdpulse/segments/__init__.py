"""Segments: RFM quintile segments and custom CEL segments, decided on profile changes.

The public surface other parts use (the pipeline, the RFM sweep, triggers)::

    found, errors = changes(book, profile, rules, sketches)   # -> [Transition], (names)
    enter(profile, found)                                     # generations, saved with it
    for t in found:                                           # Transition(customer_id,
        ...                                                   #   segment, entered, at_ms,
                                                              #   generation); t.id
"""

from cdpulse.segments.definitions import DefinitionError, SegmentBook, load_book, parse
from cdpulse.segments.membership import Decision, Transition, changes, decide, enter, rfm_moves
from cdpulse.segments.rfm import SEGMENTS as RFM_SEGMENTS

__all__ = [
    "RFM_SEGMENTS",
    "Decision",
    "DefinitionError",
    "SegmentBook",
    "Transition",
    "changes",
    "decide",
    "enter",
    "load_book",
    "parse",
    "rfm_moves",
]
