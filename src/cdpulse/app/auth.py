"""Who may call the HTTP API: bearer tokens with scopes, and a rate limit per token.

Tokens come from ``CDPULSE_API_TOKENS``, a JSON object of named tokens::

    {"shop-web": {"secret": "…", "scopes": ["ingest"]},
     "crm":      {"secret": "…", "scopes": ["read"]},
     "dpo":      {"secret": "…", "scopes": ["read", "admin"]}}

``ingest`` may post events, ``read`` may read profiles and recommendations, ``admin``
may export and erase customers. A presented token is compared with every configured
secret in constant time (digests of equal length, no early exit), so response times do
not tell an attacker how much of a guess was right. Audit records carry the token's
name, never its secret.

>>> from pydantic import SecretStr
>>> gate = Gate({"crm": ApiToken(secret=SecretStr("s3cret"), scopes=["read"])})
>>> gate.check("Bearer s3cret", "read").name
'crm'
>>> gate.check("Bearer s3cret", "admin").status, gate.check("Bearer nope", "read").status
(403, 401)
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cdpulse.settings import ApiToken, Scope, Settings


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking a request: a token name, or an HTTP status and why."""

    name: str | None
    status: int = 200
    error: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class Gate:
    """Checks the Authorization header of a request against the configured tokens."""

    def __init__(self, tokens: dict[str, ApiToken], disabled: bool = False) -> None:
        self.disabled = disabled
        self._tokens = [
            (name, _digest(t.secret.get_secret_value()), t) for name, t in tokens.items()
        ]

    def check(self, authorization: str | None, scope: Scope) -> Verdict:
        """Whether ``authorization`` (the header's value) grants ``scope``."""
        if self.disabled:
            return Verdict("auth-disabled")
        if not authorization or not authorization.startswith("Bearer "):
            return Verdict(
                None,
                401,
                "missing bearer token: send 'Authorization: Bearer <token>'; "
                "tokens are configured in CDPULSE_API_TOKENS",
            )
        presented = _digest(authorization.removeprefix("Bearer ").strip())
        found: tuple[str, ApiToken] | None = None
        for name, digest, token in self._tokens:  # no early exit: constant time
            if hmac.compare_digest(presented, digest):
                found = (name, token)
        if found is None:
            return Verdict(None, 401, "bearer token not recognised: check it, or ask for one")
        name, token = found
        if scope not in token.scopes:
            return Verdict(
                name,
                403,
                f"token {name!r} lacks scope {scope!r} (it has {', '.join(token.scopes)}); "
                f"this route needs {scope!r}",
            )
        return Verdict(name)


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
