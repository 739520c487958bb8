"""Live KPIs, counted in the stream in event time: pure, like the profile rules.

Per day, week and first-order cohort, in total and by channel, segment, campaign (the
visit's, first and last touch), newsletter and offer: visitors, identified customers,
new and returning, sessions, the funnel product view -> cart add -> checkout -> order,
orders, revenue, refunds, repeat buyers, time between orders, newsletter opens and
clicks, recommendation and offer click-through (README: Live KPIs).

``fold`` counts what a profile's events and merges change (a ``tally``), which the
pipeline's save adds to the counters only if the save is written: counted once, exactly,
however often an event is delivered. ``distinct``, ``sessions`` and ``orders`` hold the
three kinds of count whose arithmetic is not a plain sum; ``fields`` names everything;
``report`` turns counters read back into the documents the api serves.
"""
