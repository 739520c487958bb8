"""An admin merge of two known customers as the audit topic records it: who asked,
when, whom (ids only as pseudonyms) and what came of it.

The merge itself is the pipeline's (``pipeline/identity.py``, ``pipeline/stages.py``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from cdpulse.privacy.erasure import iso


@dataclass(frozen=True, slots=True)
class MergeAudit:
    """The audit record of one ``customers_merged`` event, without any personal data."""

    survivor: str  # the pseudonym of the surviving customer
    merged: str  # the pseudonym of the customer merged into it
    requested_by: str
    event_id: str
    requested_at: str
    outcome: str  # "merged", or the rule that refused it (``identity.MERGE_RULES``)

    @classmethod
    def of(
        cls,
        survivor: str,
        merged: str,
        requested_by: str | None,
        event_id: str,
        requested_at: int,
        outcome: str,
    ) -> MergeAudit:
        return cls(
            survivor, merged, requested_by or "unknown", event_id, iso(requested_at), outcome
        )

    def audit_json(self) -> bytes:
        return json.dumps({"audit": "customers_merged", **asdict(self)}, sort_keys=True).encode()
