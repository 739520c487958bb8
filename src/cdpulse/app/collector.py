"""The collector's checks on a request, for every route that ingests events.

A request holding an event type its token may not send is refused whole (403) before
anything is produced; a token over its event rate gets 429 with ``Retry-After``; an
input that never became a contract event is dead-lettered like the events validation
rejects. The Segment routes (``app/tracking_views.py``) use these, and then the
collector's own ``views._collect`` for each event, so both speak the same rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from faust.web import Response, View

from cdpulse.app.auth import RateLimit, event_refusal, verdict
from cdpulse.contract.dead_letter import DeadLetter
from cdpulse.contract.message import Message
from cdpulse.contract.validation import Rejection
from cdpulse.ops import metrics

if TYPE_CHECKING:
    from cdpulse.app.api import Services


def refused(view: View, events: Sequence[tuple[int, Any]]) -> Response | None:
    """The 403 answer when the request's token may not send one of ``events`` (each with
    its index in the request), else None (auth.COLLECTOR_SCOPES)."""
    granted = verdict()
    refusals = [r for i, obj in events if (r := event_refusal(granted, i, obj))]
    if not refusals:
        return None
    metrics.AUTH_DENIED.labels("403").inc()
    metrics.COLLECTOR_EVENTS.labels("refused").inc(len(events))
    answer: Response = view.json(
        {
            "error": f"token {granted.name!r} may not send {len(refusals)} of these "
            f"{len(events)} events (listed in 'refused'); none was accepted",
            "accepted": 0,
            "refused": [r.as_json() for r in refusals],
        },
        status=403,
    )
    return answer


def over_rate(view: View, limit: RateLimit, events: int) -> Response | None:
    """The 429 answer when the request's token has no room for ``events`` more events
    under ``limit`` (CDPULSE_INGEST_RATE), else None; the events are counted when taken."""
    token = str(verdict().name)
    wait = limit.take(token, events)
    if not wait:
        return None
    metrics.COLLECTOR_EVENTS.labels("rate_limited").inc(events)
    answer: Response = view.json(
        {
            "error": f"token {token!r} is over its limit of {limit.rate:g} events/s "
            f"(bursts of {limit.burst:g}); retry later or send less"
        },
        status=429,
        headers={"Retry-After": str(max(1, math.ceil(min(wait, 3600))))},
    )
    return answer


async def dead_letter(
    services: Services, index: int, obj: Any, rejection: Rejection
) -> dict[str, Any]:
    """Dead-letter ``obj``, the ``index``-th input of a request, for ``rejection``; its
    result line for the answer."""
    metrics.COLLECTOR_EVENTS.labels("rejected").inc()
    metrics.EVENTS_REJECTED.labels(rejection.reason).inc()
    # ASCII escapes keep any parsed string encodable (lone surrogates included).
    raw = json.dumps(obj).encode("ascii")
    letter = DeadLetter.of(Message("http", -1, -1, None, raw), rejection, datetime.now(UTC))
    await services.dead_letter.send(value=letter.to_json())
    return {
        "index": index,
        "event_id": rejection.event_id,
        "status": "rejected",
        "reason": rejection.reason,
        "detail": rejection.detail,
    }
