"""Exports for BI tools: profiles and segment members as typed tables (``cdpulse export``)."""
