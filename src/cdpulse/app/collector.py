"""The collector's checks on a request, for every route that ingests events.

A request holding an event type its token may not send is refused whole (403) before
anything is produced; a token over its event rate gets 429 with ``Retry-After``; an
input that never became a contract event is dead-lettered like the events validation
rejects. The Segment routes (``app/tracking_views.py``) use these, and then the
collector's own ``views._collect`` for each event, so both speak the same rules; a custom
event is held to its registered schema here as the worker holds it (``schema_violation``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from faust.web import Response, View

from cdpulse.app.auth import RateLimit, event_refusal, verdict
from cdpulse.contract.dead_letter import DeadLetter
from cdpulse.contract.message import Message
from cdpulse.contract.mirror import IdentifyEvent
from cdpulse.contract.validation import Rejection, validate
from cdpulse.ops import metrics
from cdpulse.privacy.data_keys import protect_traits, sealing_customer

if TYPE_CHECKING:
    from cdpulse.app.api import Services

# A collector request may carry many events; each is still held to max_event_bytes.
MAX_EVENTS_PER_REQUEST = 500


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
    services: Services, index: int, obj: Any, rejection: Rejection, raw: bytes | None = None
) -> dict[str, Any]:
    """Dead-letter ``obj`` (encoded as ``raw`` when given), the ``index``-th input of a
    request, for ``rejection``; its result line for the answer."""
    metrics.COLLECTOR_EVENTS.labels("rejected").inc()
    metrics.EVENTS_REJECTED.labels(rejection.reason).inc()
    # ASCII escapes keep any parsed string encodable (lone surrogates included).
    raw = json.dumps(obj).encode("ascii") if raw is None else raw
    letter = DeadLetter.of(Message("http", -1, -1, None, raw), rejection, datetime.now(UTC))
    await services.dead_letter.send(value=letter.to_json())
    return {
        "index": index,
        "event_id": rejection.event_id,
        "status": "rejected",
        "reason": rejection.reason,
        "detail": rejection.detail,
    }


async def collect(services: Services, index: int, obj: Any) -> dict[str, Any]:
    """Validate one posted event and produce it; its result line for the response."""
    settings = services.settings
    # ASCII escapes keep any parsed string encodable (lone surrogates included).
    raw = json.dumps(obj).encode("ascii")
    if len(raw) > settings.max_event_bytes:
        result: Any = Rejection(
            "too_large", f"event is {len(raw)} bytes; the limit is {settings.max_event_bytes}"
        )
    else:
        result = validate(
            obj,
            now=datetime.now(UTC),
            max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
            schemas=services.rules.custom_schemas,
        )
    if isinstance(result, Rejection):
        return await dead_letter(services, index, obj, result, raw)
    customer = (
        sealing_customer(obj, services.rules.traits) if isinstance(result, IdentifyEvent) else None
    )
    if customer is not None:
        # Personal traits never reach Kafka in clear: pseudonymised, and sealed with the
        # customer's data key (crypto-shredding, README: Privacy and security).
        pseudonym = services.rules.traits.pseudonymizer.of_id(customer)
        key = await services.data_keys.unless_erased(customer, pseudonym)
        obj = protect_traits(obj, services.rules.traits, key)
        raw = json.dumps(obj).encode("ascii")
    topic = services.outputs[services.topics.for_type(result.type)]
    delivery = await topic.send(key=result.key.encode("utf-8"), value=raw)
    await delivery
    metrics.COLLECTOR_EVENTS.labels("accepted").inc()
    return {"index": index, "event_id": result.event_id, "status": "accepted"}
