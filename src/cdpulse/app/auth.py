"""Who may call the HTTP API: bearer tokens with scopes, and a rate limit per token.

Tokens come from ``CDPULSE_API_TOKENS``, a JSON object of named tokens::

    {"shop-web":   {"secret": "…", "scopes": ["ingest"]},
     "shop-login": {"secret": "…", "scopes": ["ingest", "identity", "assign"]},
     "crm":        {"secret": "…", "scopes": ["read"]},
     "dpo":        {"secret": "…", "scopes": ["read", "admin"]}}

``ingest`` may post behavioural events, ``identity`` identify and consent events,
``read`` may read profiles, recommendations, segments, rules and experiment results,
``assign`` may assign customers to experiments (which records their exposure), ``admin``
may export and erase customers (README: Privacy and security has the route table).
Every route of the api goes through ``Guard`` (``@guard("read")`` on each handler), and
a test walks the api's route table so that a route without a scope fails the build.
The Segment routes also take a token as an SDK's write key (``@guard(scope,
write_key=True)``): the HTTP Basic user name, or without an Authorization header the
body's ``writeKey`` (analytics.js before 1.84); a token's ``"origins"`` are the web pages
that may send with it (``app/cors.py``).

A presented token is compared with every configured secret in constant time (digests
of equal length, no early exit), so response times do not tell an attacker how much of
a guess was right. Audit records carry the token's name, never its secret.

>>> from pydantic import SecretStr
>>> gate = Gate({"crm": ApiToken(secret=SecretStr("s3cret"), scopes=["read"])})
>>> gate.check("Bearer s3cret", "read").name
'crm'
>>> gate.check("Bearer s3cret", "admin").status, gate.check("Bearer nope", "read").status
(403, 401)
>>> event_refusal(gate.check("Bearer s3cret", "read"), 0, {"type": "identify"}).scope
'identity'
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, get_args

from aiohttp.web_protocol import RequestPayloadError
from faust.web import Request, Response, View

from cdpulse.contract.events import EVENT_TYPES
from cdpulse.ops import metrics
from cdpulse.settings import ApiToken, Scope, Settings

ALL_SCOPES: frozenset[Scope] = frozenset(get_args(Scope))


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking a request: a token name, its scopes and the web origins
    that may send with it, or an HTTP status and why (``code``: RFC 6750's error code for
    the challenge, "" when none applies)."""

    name: str | None
    status: int = 200
    error: str = ""
    scopes: frozenset[Scope] = frozenset()
    code: str = ""
    origins: frozenset[str] = frozenset()

    @property
    def allowed(self) -> bool:
        return self.status == 200

    def grants(self, scope: Scope) -> bool:
        return self.allowed and scope in self.scopes


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _presented(authorization: str | None, write_key: bool) -> str | None:
    """The token an Authorization header presents, None when it presents none: a bearer
    token, or with ``write_key`` the user name of HTTP Basic credentials."""
    if not authorization:
        return None
    if authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ").strip()
    if not (write_key and authorization.startswith("Basic ")):
        return None
    try:
        credentials = base64.b64decode(authorization.removeprefix("Basic ").strip(), validate=True)
    except binascii.Error:
        return None
    user = credentials.decode("utf-8", "surrogateescape").partition(":")[0]
    return user or None


class Gate:
    """Checks the Authorization header of a request against the configured tokens."""

    def __init__(self, tokens: dict[str, ApiToken], disabled: bool = False) -> None:
        self.disabled = disabled
        self._tokens = [
            (name, _digest(t.secret.get_secret_value()), t) for name, t in tokens.items()
        ]

    def check(
        self,
        authorization: str | None,
        scope: Scope,
        write_key: bool = False,
        body_key: str | None = None,
    ) -> Verdict:
        """Whether ``authorization`` (the header's value) grants ``scope``; with
        ``write_key``, HTTP Basic with the token as user name counts too (the Segment SDKs
        send their write key so, with an empty password), and so does ``body_key``, the
        body's ``writeKey``, when there is no Authorization header."""
        if self.disabled:
            return Verdict("auth-disabled", scopes=ALL_SCOPES)
        secret = _presented(authorization, write_key)
        if secret is None and authorization is None and write_key:
            secret = body_key or None
        if secret is None:
            how = " (or, from a Segment SDK, the token as its write key)" if write_key else ""
            return Verdict(
                None,
                401,
                f"missing bearer token: send 'Authorization: Bearer <token>'{how}; "
                "tokens are configured in CDPULSE_API_TOKENS",
            )
        presented = _digest(secret)
        found: tuple[str, ApiToken] | None = None
        for name, digest, token in self._tokens:  # no early exit: constant time
            if hmac.compare_digest(presented, digest):
                found = (name, token)
        if found is None:
            return Verdict(
                None,
                401,
                "bearer token not recognised: check it, or ask for one",
                code="invalid_token",
            )
        name, token = found
        scopes = frozenset(token.scopes)
        if scope not in scopes:
            held = ", ".join(token.scopes) or "no scope"
            return Verdict(
                name,
                403,
                f"token {name!r} lacks scope {scope!r} (it has {held}); this route needs {scope!r}",
                scopes,
                "insufficient_scope",
            )
        return Verdict(name, scopes=scopes, origins=frozenset(token.origins))


Handler = Callable[..., Awaitable[Response]]
# The verdict of the request whose handler is running (each request is handled in its
# own asyncio context; the guard sets it around the handler and resets it after).
_VERDICT: ContextVar[Verdict | None] = ContextVar("cdpulse_verdict", default=None)


class Guard:
    """The one door of every HTTP route: ``@guard(scope)`` on each handler of a view.

    A request without a recognised token gets 401, one whose token lacks the scope 403,
    one whose token is over its request rate 429 (``Retry-After``), all before the
    handler runs, so before it reads or writes anything. Each carries a JSON body saying
    what is wrong and how to fix it; a 401 or 403 also a ``WWW-Authenticate: Bearer``
    challenge naming the scope (RFC 6750). There is no public variant: the only routes
    without a token are ``/healthz``, ``/readyz`` and ``/metrics`` where the settings make
    them public (``app/health.py``), faust's constant index ``/``, and the browsers'
    CORS preflight (``OPTIONS``) of the Segment routes, which answers with headers only
    and runs nothing (``app/cors.py``).
    """

    def __init__(self, gate: Gate, limits: Mapping[str, RateLimit] | None = None) -> None:
        self.gate = gate
        # Requests per token on every scoped route, after the token is recognised: a
        # token that runs away is slowed down wherever it calls, not only at the
        # collector (whose events are limited on top, CDPULSE_INGEST_RATE).
        self.limits = dict(limits or {})
        # Called with each request a handler answered, its verdict and the answer; they
        # must not raise or wait (the read audit, ``app/audit.py``).
        self.observers: list[Callable[[Request, Verdict, Response], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> Guard:
        limits = {
            name: RateLimit(
                token.request_rate or settings.request_rate,
                token.request_burst or settings.request_burst,
            )
            for name, token in settings.api_tokens.items()
        }
        return cls(Gate(settings.api_tokens, settings.auth_disabled), limits)

    def __call__(self, scope: Scope, write_key: bool = False) -> Callable[[Handler], Handler]:
        """Decorate a view's handler: it runs only for tokens with ``scope``; with
        ``write_key`` also for a token sent as a Segment write key (HTTP Basic, or the
        body's ``writeKey`` when the request has no Authorization header)."""

        def wrap(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def run(view: View, request: Request, **kwargs: Any) -> Response:
                authorization = request.headers.get("Authorization")
                body_key = (
                    await _body_write_key(request) if write_key and authorization is None else None
                )
                verdict = self.gate.check(authorization, scope, write_key, body_key)
                if not verdict.allowed:
                    return self._refuse(view, verdict, scope)
                slowed = self._over_rate(view, verdict)
                if slowed is not None:
                    return slowed
                token = _VERDICT.set(verdict)
                try:
                    response = await handler(view, request, **kwargs)
                finally:
                    _VERDICT.reset(token)
                for observe in self.observers:
                    observe(request, verdict, response)
                return response

            return run

        return wrap

    def refusal(self, view: View, request: Request, scope: Scope) -> Response | None:
        """The 401, 403 or 429 answer to ``request`` when its token lacks ``scope`` or is
        over its rate, else None: for a view that needs a token only under some settings
        (``app/health.py``)."""
        verdict = self.gate.check(request.headers.get("Authorization"), scope)
        return (
            self._over_rate(view, verdict)
            if verdict.allowed
            else self._refuse(view, verdict, scope)
        )

    def _over_rate(self, view: View, verdict: Verdict) -> Response | None:
        """The 429 answer when ``verdict``'s token is over its request rate, else None.
        Without tokens (auth disabled) there is no one to limit."""
        name = verdict.name
        limit = self.limits.get(name) if name is not None else None
        if name is None or limit is None:
            return None
        wait = limit.take(name, 1)
        if not wait:
            return None
        metrics.AUTH_DENIED.labels("429").inc()
        response: Response = view.json(
            {
                "error": f"token {verdict.name!r} is over its limit of {limit.rate:g} "
                f"requests/s on this api process (bursts of {limit.burst:g}); "
                "retry after the time in Retry-After or call less often",
            },
            status=429,
            headers={"Retry-After": str(max(1, math.ceil(min(wait, 3600))))},
        )
        return response

    @staticmethod
    def _refuse(view: View, verdict: Verdict, scope: Scope) -> Response:
        metrics.AUTH_DENIED.labels(str(verdict.status)).inc()
        challenge = 'Bearer realm="cdpulse"'
        if verdict.code:
            challenge += f', error="{verdict.code}"'
        challenge += f', scope="{scope}"'
        response: Response = view.json(
            {"error": verdict.error, "scope": scope},
            status=verdict.status,
            headers={"WWW-Authenticate": challenge},
        )
        return response


async def _body_write_key(request: Request) -> str | None:
    """The ``writeKey`` of a JSON body, None when it has none. analytics.js before 1.84
    sends its write key only so: a ``text/plain`` body with no Authorization header is a
    request a browser sends cross-origin without a preflight (also from ``sendBeacon``).
    aiohttp keeps the body it read, for the handler; its bound (1 MiB) holds here too."""
    try:
        payload = json.loads(await request.read())
    except (RequestPayloadError, ValueError, RecursionError):
        return None  # no key here; the handler names what is wrong with the body
    key = payload.get("writeKey") if isinstance(payload, dict) else None
    return key if isinstance(key, str) else None


def verdict() -> Verdict:
    """The guard's verdict on the request being handled: its token's name and scopes."""
    found = _VERDICT.get()
    if found is None:
        raise LookupError("no request passed the guard here: decorate the handler @guard(scope)")
    return found


def who() -> str:
    """Who made the request being handled, for audit records: the token's name (never
    the token)."""
    return str(verdict().name)


# Which scope may post each event type to the collector; None: no token may (the table
# names every type of the contract, and a test holds it to the contract: a new type is
# refused until it is placed here). Behaviour is ``ingest``. Who a customer is and what
# they agreed to is ``identity``: an ingest token ships inside web pages and apps, where
# anyone can read it, so it must not link an anonymous id to any customer (a merge),
# set anyone's traits or change anyone's consent; those come from a server that has
# authenticated the customer. Erasure is not an event clients send: DELETE
# /v1/profiles/{id} (``admin``) requests it, with the token's name as ``requested_by``;
# likewise merging two known customers: POST /v1/admin/merges (``admin``).
COLLECTOR_SCOPES: Mapping[str, Scope | None] = {
    "page_viewed": "ingest",
    "product_viewed": "ingest",
    "search_performed": "ingest",
    "product_added": "ingest",
    "product_removed": "ingest",
    "checkout_started": "ingest",
    "order_completed": "ingest",
    "order_refunded": "ingest",
    "email_opened": "ingest",
    "email_clicked": "ingest",
    "offer_shown": "ingest",
    "offer_redeemed": "ingest",
    "custom": "ingest",
    "identify": "identity",
    "consent_updated": "identity",
    "erasure_requested": None,
    "customers_merged": None,
}


# The admin route that publishes each type no token may post.
ADMIN_ROUTES: Mapping[str, str] = {
    "erasure_requested": "request erasure with DELETE /v1/profiles/{id}",
    "customers_merged": "merge two known customers with POST /v1/admin/merges",
}


@dataclass(frozen=True, slots=True)
class EventRefusal:
    """Why one posted event may not be sent with the request's token."""

    index: int
    event_id: Any
    type: str
    scope: Scope | None
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "event_id": self.event_id,
            "type": self.type,
            "status": "refused",
            "scope": self.scope,
            "detail": self.detail,
        }


def event_refusal(verdict: Verdict, index: int, obj: Any) -> EventRefusal | None:
    """Why the token of ``verdict`` may not post ``obj``, the ``index``-th event of a
    request; None when it may, or when ``obj`` names no type of the contract (validation
    then rejects it with the contract's reason)."""
    kind = obj.get("type") if isinstance(obj, dict) else None
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        return None
    event_id = obj.get("event_id")
    if kind not in COLLECTOR_SCOPES:  # fail closed: a type nobody placed yet
        return EventRefusal(
            index, event_id, kind, None, f"{kind} has no scope in auth.COLLECTOR_SCOPES yet"
        )
    scope = COLLECTOR_SCOPES[kind]
    if scope is None:
        return EventRefusal(
            index,
            event_id,
            kind,
            None,
            f"{kind} is not accepted by the collector from any token: "
            f"{ADMIN_ROUTES.get(kind, 'an admin route publishes it')} (scope 'admin'), which "
            "records the token's name as requested_by",
        )
    if verdict.grants(scope):
        return None
    why = (
        "it changes who a customer is or what they consented to; send it from a server "
        "that has authenticated the customer"
        if scope == "identity"
        else f"its type needs {scope!r}"
    )
    return EventRefusal(
        index,
        event_id,
        kind,
        scope,
        f"token {verdict.name!r} lacks scope {scope!r} for {kind}: {why}",
    )


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class RateLimit:
    """A token bucket per API token: ``rate`` events a second, bursts up to ``burst``.

    Per api process: with N api processes behind a load balancer a token gets up to N times
    the rate, which is what a limit against runaway clients needs, not a quota.
    """

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, name: str, n: int) -> float:
        """Take ``n`` events from ``name``'s bucket: 0.0 when allowed, else the seconds
        to wait before ``n`` events fit."""
        now = self.clock()
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if n <= bucket.tokens:
            bucket.tokens -= n
            return 0.0
        return (n - bucket.tokens) / self.rate if n <= self.burst else float("inf")


def refusals(settings: Settings) -> list[str]:
    """Why no role may start with ``settings`` (each with its fix); [] when fine."""
    problems = []
    if not settings.pseudonym_key.get_secret_value():
        problems.append(
            "CDPULSE_PSEUDONYM_KEY is empty: set it to a long random secret, e.g. "
            "$(python -c 'import secrets; print(secrets.token_urlsafe(32))'), and keep it: "
            "pseudonyms and the erasure ledger depend on it"
        )
    if not settings.api_tokens and not settings.auth_disabled:
        problems.append(
            'no API tokens: set CDPULSE_API_TOKENS=\'{"name": {"secret": "...", '
            '"scopes": ["ingest", "read", "admin"]}}\', or for local development '
            "only CDPULSE_AUTH_DISABLED=true"
        )
    return problems
