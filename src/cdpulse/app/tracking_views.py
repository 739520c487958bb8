"""The Segment tracking API on the collector: ``POST /v1/batch`` and the single calls
``/v1/track``, ``/v1/identify``, ``/v1/page``, ``/v1/screen``, ``/v1/alias``, ``/v1/group``,
and the short paths analytics.js posts to (``/v1/b``, ``/v1/t``, ``/v1/i``, ``/v1/p``,
``/v1/s``, ``/v1/a``, ``/v1/g``).

So that a shop already running a Segment (or RudderStack) SDK only points it here. The
SDK's write key is a cdpulse token (HTTP Basic user name with an empty password, or the
body's ``writeKey``), held to the route's scope ``ingest`` and, per event type, to the
collector's scopes (an identify or alias needs ``identity``); a web page's request to the
origins its token names (``app/cors.py``). The body is JSON whatever its content type
says: analytics.js sends ``text/plain``, so that a browser sends it without asking first.
Each message becomes a contract event (``contract/segment_spec.py``) and then goes the
collector's way: validation, trait protection, the same topic and key
(``collector.collect``), rejections to the dead-letter topic.

The answers are those the SDKs' retry logic expects: 200 once the request was taken,
whatever became of each message (the body lists each: accepted, rejected with its
reason, or skipped by its ``integrations``), since resending would not change a
rejection; 400, not retried, for a body that is not a Segment request or over the spec's
limits (32 KB a message, 500 KB a batch); 401/403 for the write key; 429 with
``Retry-After`` and 5xx (the broker did not acknowledge) are retried, and a retry's
messages keep their ``messageId``, the event id the engine's dedupe window drops a
repeat by.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp.web_protocol import RequestPayloadError
from faust.web import Request, Response, View

from cdpulse.app import cors
from cdpulse.app.collector import MAX_EVENTS_PER_REQUEST, collect, dead_letter, over_rate, refused
from cdpulse.contract.segment_spec import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    message_id,
    to_event,
    wanted,
)
from cdpulse.contract.validation import TOO_LARGE, Rejection
from cdpulse.ops import metrics

if TYPE_CHECKING:
    from cdpulse.app.api import Services

# Route -> the call its body is (None: a batch of calls, each naming its type).
ROUTES: dict[str, str | None] = {
    "/v1/batch": None,
    "/v1/track": "track",
    "/v1/identify": "identify",
    "/v1/page": "page",
    "/v1/screen": "screen",
    "/v1/alias": "alias",
    "/v1/group": "group",
}
# analytics.js posts to the first letter of each (api.segment.io takes both spellings).
ROUTES |= {path[:5]: call for path, call in ROUTES.items()}


class Malformed(Exception):
    """A request that is not a Segment request: 400, which the SDKs do not retry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def _body(request: Request, limit: int) -> Any:
    """The JSON of a request body of at most ``limit`` bytes. A gzip body (the SDKs'
    ``gzip=True``) arrives unzipped: aiohttp decodes Content-Encoding, within its own
    bound on the body (1 MiB), so the limit holds for what it unzipped to."""
    try:
        raw = await request.read()
    except RequestPayloadError as exc:  # a Content-Encoding the body does not match
        raise Malformed("invalid_body", f"body does not decode: {exc}") from None
    if len(raw) > limit:
        raise Malformed(TOO_LARGE, f"body is {len(raw)} bytes; the limit is {limit}")
    try:
        # Strict UTF-8 first: json.loads would let encoded surrogates through.
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge integers
        raise Malformed("invalid_json", f"body is not JSON: {exc}") from None


def _keyless(message: Any) -> Any:
    """``message`` without the ``writeKey`` analytics.js puts in each: a rejected message
    goes to the dead-letter topic, and a token does not."""
    if isinstance(message, dict) and "writeKey" in message:
        return {k: v for k, v in message.items() if k != "writeKey"}
    return message


def _messages(payload: Any, call: str | None) -> tuple[list[Any], Any]:
    """The messages of a request and the batch's ``sentAt``."""
    if not isinstance(payload, dict):
        raise Malformed("not_an_object", "body must be a JSON object (a Segment message)")
    if call is not None:
        return [_keyless(payload)], None
    batch = payload.get("batch")
    if not isinstance(batch, list) or not 1 <= len(batch) <= MAX_EVENTS_PER_REQUEST:
        raise Malformed(
            "invalid_batch",
            f"body must be {{'batch': [1 to {MAX_EVENTS_PER_REQUEST} messages]}}",
        )
    return [_keyless(m) for m in batch], payload.get("sentAt")


def _event(message: Any, call: str | None, sent_at: Any, now: datetime) -> Any:
    """The contract event of one message, its rejection, or None when its
    ``integrations`` keep it from cdpulse."""
    size = len(json.dumps(message).encode("ascii"))
    if size > MAX_MESSAGE_BYTES:
        event_id = message_id(message) if isinstance(message, dict) else None
        label = event_id if isinstance(event_id, str) else None
        detail = f"event {label}: message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}"
        return Rejection(TOO_LARGE, detail, label)
    if isinstance(message, dict) and not wanted(message):
        return None
    return to_event(message, call=call, sent_at=sent_at, received_at=now)


def register_tracking_views(services: Services) -> None:
    """Add the Segment tracking routes to the api."""
    guarded = services.guard
    cross_origin = cors.CrossOrigin.from_settings(services.settings)

    async def take(view: View, request: Request, call: str | None) -> Response:
        wrong_page = cors.refusal(view, request)
        if wrong_page is not None:
            return wrong_page
        limit = MAX_BATCH_BYTES if call is None else MAX_MESSAGE_BYTES
        try:
            payload = await _body(request, limit)
            messages, sent_at = _messages(payload, call)
        except Malformed as exc:
            metrics.COLLECTOR_EVENTS.labels(
                "too_large" if exc.code == TOO_LARGE else "bad_json"
            ).inc()
            answer: Response = view.json({"code": exc.code, "message": str(exc)}, status=400)
            return answer
        now = datetime.now(UTC)
        events = [_event(message, call, sent_at, now) for message in messages]
        typed = [(i, e) for i, e in enumerate(events) if isinstance(e, dict)]
        stop = refused(view, typed)
        if stop is None:  # a refused request takes nothing from the token's event rate
            stop = over_rate(view, services.ingest_limit, len(typed))
        if stop is not None:
            return stop
        results = []
        for i, (message, event) in enumerate(zip(messages, events, strict=True)):
            if event is None:
                results.append({"index": i, "event_id": message_id(message), "status": "skipped"})
            elif isinstance(event, Rejection):
                results.append(await dead_letter(services, i, message, event))
            else:
                results.append(await collect(services, i, event))
        tally = {s: sum(r["status"] == s for r in results) for s in ("accepted", "rejected")}
        answer = view.json(
            {
                "success": True,
                **tally,
                "skipped": len(results) - sum(tally.values()),
                "results": results,
            }
        )
        return answer

    def route(path: str, call: str | None) -> None:
        @services.app.page(path, name=f"segment_{path.removeprefix('/v1/')}")
        class TrackingView(View):
            @cross_origin.answering
            @guarded("ingest", write_key=True)
            async def post(self, request: Request) -> Response:
                return await take(self, request, call)

            async def options(self, request: Request) -> Response:
                # No token: a browser sends none with a preflight (app/cors.py).
                return cross_origin.preflight(self, request)

    for path, call in ROUTES.items():
        route(path, call)
