"""Raw bytes in, an ``Event`` or a ``Rejection`` with a precise reason out.

Every check the contract makes lives here, so the worker, the HTTP collector, the
producer and ``cdpulse produce`` reject the same input for the same reason. Accepted
events come out as the engine's structs (``mirror``): the worker's messages through the
fast decoder first, the contract's pydantic models deciding whatever it refuses.
Decoding is total: an exception on one message is that message's rejection
(``processing_error``), never the worker's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from cdpulse.contract import mirror
from cdpulse.contract.custom_schemas import CustomSchemas, field_path
from cdpulse.contract.events import EVENT_ADAPTER, EVENT_TYPES
from cdpulse.contract.mirror import CustomEvent, Event

# Reason codes: stable strings, used as the ``reason`` of a dead letter and as a
# metric label. Never add a code that carries input data.
TOO_LARGE = "too_large"
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_TYPE = "missing_type"
UNKNOWN_TYPE = "unknown_type"
MISSING_ID = "missing_id"
INVALID_FIELD = "invalid_field"
FUTURE_TIMESTAMP = "future_timestamp"
# A custom event whose properties violate the JSON Schema registered for its name
# (``contract/custom_schemas.py``); the detail names the failing paths.
SCHEMA_VIOLATION = "schema_violation"
# A message the engine could not process though it passed the contract (a bug, or input
# no test foresaw): quarantined to the dead-letter topic with the exception's type.
PROCESSING_ERROR = "processing_error"
# An identify whose link the identity rules refuse (``pipeline/identity.py``): applied to
# its customer without the link; the detail names the rule.
IDENTITY_REFUSED = "identity_refused"
# An admin merge of two customers the identity rules refuse: nothing is merged; the
# detail names the rule.
MERGE_REFUSED = "merge_refused"

REASONS: tuple[str, ...] = (
    TOO_LARGE,
    INVALID_UTF8,
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_TYPE,
    UNKNOWN_TYPE,
    MISSING_ID,
    INVALID_FIELD,
    FUTURE_TIMESTAMP,
    SCHEMA_VIOLATION,
    PROCESSING_ERROR,
    IDENTITY_REFUSED,
    MERGE_REFUSED,
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input is not an event: a stable ``reason`` code and a sentence for people.

    The sentence names the fields at fault, what is wrong and pydantic's error type, and
    never quotes the input's values: it is published to the dead-letter topic.
    """

    reason: str
    detail: str
    event_id: str | None = None


def _event_id_of(obj: Any) -> str | None:
    if isinstance(obj, mirror.Envelope):
        return obj.event_id
    if isinstance(obj, dict):
        value = obj.get("event_id")
        if isinstance(value, str):
            return value[:128]
    return None


def _path(loc: tuple[int | str, ...]) -> str:
    # loc[0] is the event type the union chose
    return field_path(loc[1:]) or "event"


def _describe(error: ErrorDetails) -> str:
    """One error as ``'path': message [type]``: the message is pydantic's template or the
    contract's own sentence (``parse_timestamp``), neither of which quotes the input."""
    message = error["msg"].removeprefix("Value error, ")
    return f"{_path(error['loc'])!r}: {message} [{error['type']}]"


def _from_validation_error(exc: ValidationError, obj: Any) -> Rejection:
    event_id = _event_id_of(obj)
    prefix = f"event {event_id}: " if event_id else "event: "
    # Never the input: a rejection's detail goes to the dead-letter topic and the
    # collector's answer, and a wrong-typed field may hold an email address or a name.
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    kind = first["type"]
    if kind == "union_tag_not_found":
        return Rejection(MISSING_TYPE, prefix + "'type' is missing", event_id)
    if kind == "union_tag_invalid":  # pydantic's message quotes the type it got: not shown
        expected = ", ".join(EVENT_TYPES)
        detail = f"{prefix}unknown 'type'; expected one of {expected}"
        return Rejection(UNKNOWN_TYPE, detail, event_id)
    if kind == "value_error" and "customer_id" in first["msg"] and len(first["loc"]) == 1:
        return Rejection(MISSING_ID, prefix + first["msg"].removeprefix("Value error, "), event_id)
    details = "; ".join(_describe(e) for e in errors[:3])
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return Rejection(INVALID_FIELD, prefix + details + more, event_id)


def decode(
    raw: bytes,
    *,
    now: datetime,
    max_bytes: int = 65536,
    max_future_skew: timedelta = timedelta(minutes=5),
    clock: str = "now",
    schemas: CustomSchemas | None = None,
) -> Event | Rejection:
    """Validate one raw message; an event time may be at most ``max_future_skew`` after
    ``now``, which ``clock`` names in the rejection (a message's Kafka timestamp, say).
    A custom event is held to its schema in ``schemas``, when one is registered."""
    if len(raw) > max_bytes:
        return Rejection(TOO_LARGE, f"event is {len(raw)} bytes; the limit is {max_bytes}")
    event = mirror.decode(raw)
    try:
        if event is not None and event.at < _millis(now + max_future_skew):
            return conforming(event, schemas)
        return conforming(_decode_slowly(raw, now, max_future_skew, clock), schemas)
    except Exception as exc:  # total: one message never stops the caller
        return crashed(exc, _event_id_of(event))


def conforming(event: Event | Rejection, schemas: CustomSchemas | None) -> Event | Rejection:
    """``event``, or its rejection when it is a custom event violating the schema
    ``schemas`` registers for its name (``schema_violation``, naming the paths)."""
    if not schemas or type(event) is not CustomEvent:
        return event
    problem = schemas.violation(event.name, event.properties)
    if problem is None:
        return event
    return Rejection(SCHEMA_VIOLATION, f"event {event.event_id}: {problem}", event.event_id)


def crashed(exc: BaseException, event_id: str | None = None) -> Rejection:
    """The rejection of a message whose processing raised ``exc``."""
    prefix = f"event {event_id}: " if event_id else "event: "
    return Rejection(
        PROCESSING_ERROR, f"{prefix}could not be processed ({type(exc).__name__})", event_id
    )


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _decode_slowly(
    raw: bytes, now: datetime, max_future_skew: timedelta, clock: str
) -> Event | Rejection:
    """The contract's own path: json, then pydantic, for the exact reason of a rejection."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(INVALID_UTF8, f"event is not valid UTF-8 (byte {exc.start})")
    try:
        obj = json.loads(text)
    except RecursionError:
        return Rejection(INVALID_JSON, "event is not JSON: nesting too deep")
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python allows
        return Rejection(INVALID_JSON, f"event is not JSON: {str(exc)[:200]}")
    # Valid UTF-8 text can still escape a lone surrogate; only an escape can, so the
    # (costlier) check runs only when the text has one.
    escapes = "\\ud" in text or "\\uD" in text
    return validate(
        obj, now=now, max_future_skew=max_future_skew, check_unicode=escapes, clock=clock
    )


def _has_lone_surrogate(obj: Any) -> bool:
    """Whether a parsed JSON value holds a string no UTF-8 can carry (a ``\ud800`` escape)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def validate(
    obj: Any,
    *,
    now: datetime,
    max_future_skew: timedelta = timedelta(minutes=5),
    check_unicode: bool = True,
    clock: str = "now",
    schemas: CustomSchemas | None = None,
) -> Event | Rejection:
    """Validate one already-parsed JSON value (the collector's, an import's); ``now``,
    ``clock`` and ``schemas`` as in ``decode``."""
    if not isinstance(obj, dict):
        return Rejection(NOT_AN_OBJECT, f"event must be a JSON object, got {type(obj).__name__}")
    if check_unicode and _has_lone_surrogate(obj):
        return Rejection(
            INVALID_UTF8,
            "event holds a lone surrogate (an unpaired \\ud800-\\udfff escape): not Unicode text",
            _event_id_of(obj) if not _has_lone_surrogate(obj.get("event_id")) else None,
        )
    try:
        event = EVENT_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        return _from_validation_error(exc, obj)
    except RecursionError:
        return Rejection(INVALID_FIELD, "event nesting is too deep", _event_id_of(obj))
    except Exception as exc:  # total, as decode
        return crashed(exc, _event_id_of(obj))
    if event.timestamp > now + max_future_skew:
        ahead = (event.timestamp - now).total_seconds()
        return Rejection(
            FUTURE_TIMESTAMP,
            f"event {event.event_id}: 'timestamp' is {ahead:.0f}s ahead of {clock} "
            f"({now.isoformat()}); at most {max_future_skew.total_seconds():.0f}s is allowed",
            event.event_id,
        )
    try:
        return conforming(mirror.from_contract(obj, event), schemas)
    except Exception as exc:
        return crashed(exc, event.event_id)
