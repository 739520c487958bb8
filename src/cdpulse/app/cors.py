"""Web pages on the Segment routes: CORS, allowed per write key.

analytics.js in a shop's page posts to the api from the page's origin. Each token names
the origins whose pages may send with it (``"origins"`` in CDPULSE_API_TOKENS); a token
without any is for servers only.

Two moments, two rules:

* The preflight (``OPTIONS``), which a browser sends before a request with an
  Authorization header (analytics.js from 1.84) or a JSON content type, carries no
  credentials, so its answer cannot depend on the token: it allows ``POST`` with the
  headers the SDKs send to an origin that some token names, and refuses any other (403
  without CORS headers: the browser then does not send). It tells a caller only whether
  an origin is configured somewhere.
* The request itself is held to its own token: one with an ``Origin`` its token does not
  name is refused (403) before anything is taken. This is the check that counts: a
  ``text/plain`` request with the write key in the body (analytics.js before 1.84,
  ``sendBeacon``) needs no preflight, so a browser sends it whatever a preflight would
  have said. A request without ``Origin`` (a server's SDK) is not a page's.

Every answer to an origin some token names carries ``Access-Control-Allow-Origin`` with
that origin, never ``*``, so the page's SDK reads the status and retries or drops as it
should (a 401 or 403 too). Never ``Access-Control-Allow-Credentials``: the write key
travels in a header or the body, never in a cookie, so a browser has no credential of its
own to lend to another site's page.

>>> policy = CrossOrigin(frozenset({"https://shop.example"}))
>>> policy.headers("https://shop.example")["Access-Control-Allow-Origin"]
'https://shop.example'
>>> policy.headers("https://elsewhere.example")
{'Vary': 'Origin'}
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from faust.web import Request, Response, View

from cdpulse.app.auth import Handler, verdict
from cdpulse.ops import metrics
from cdpulse.settings import Settings

# What a preflight allows: the write key (HTTP Basic), the body's type and encoding (the
# SDKs' gzip) and analytics.js's X-Retry-Count on a retry.
ALLOWED_HEADERS = "Authorization, Content-Type, Content-Encoding, X-Retry-Count"
# How long a browser may keep a preflight's answer: an origin taken off every token is
# refused its preflights within ten minutes (its requests at once: the token decides).
PREFLIGHT_MAX_AGE = 600


@dataclass(frozen=True, slots=True)
class CrossOrigin:
    """The CORS answers of the Segment routes: ``origins`` are every token's."""

    origins: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> CrossOrigin:
        return cls(frozenset(o for t in settings.api_tokens.values() for o in t.origins))

    def headers(self, origin: str | None) -> dict[str, str]:
        """The CORS headers of an answer to a request from ``origin``."""
        if origin is None or origin not in self.origins:
            return {"Vary": "Origin"}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def preflight(self, view: View, request: Request) -> Response:
        """The answer to a browser's ``OPTIONS``: which requests its page may send."""
        origin = request.headers.get("Origin")
        headers = self.headers(origin)
        if "Access-Control-Allow-Origin" not in headers:
            metrics.AUTH_DENIED.labels("403").inc()
            refused: Response = view.json(
                {
                    "error": f"origin {origin!r} may not send here: add it to the 'origins' "
                    "of the token its pages send with (CDPULSE_API_TOKENS)"
                },
                status=403,
                headers=headers,
            )
            return refused
        allowed: Response = view.bytes(
            b"",
            status=204,
            headers={
                **headers,
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
            },
        )
        return allowed

    def answering(self, handler: Handler) -> Handler:
        """Decorate a handler: its answers, the guard's included, carry the CORS headers
        of the request's origin."""

        @functools.wraps(handler)
        async def run(view: View, request: Request, **kwargs: Any) -> Response:
            response = await handler(view, request, **kwargs)
            response.headers.update(self.headers(request.headers.get("Origin")))
            return response

        return run


def refusal(view: View, request: Request) -> Response | None:
    """The 403 answer to a request from a web page whose origin the request's token does
    not name, else None (no ``Origin``: not a page's request)."""
    origin = request.headers.get("Origin")
    granted = verdict()
    if origin is None or origin in granted.origins:
        return None
    metrics.AUTH_DENIED.labels("403").inc()
    named = ", ".join(sorted(granted.origins)) or "none: it is for servers only"
    answer: Response = view.json(
        {
            "error": f"token {granted.name!r} may not send from web page {origin!r} (its "
            f"origins: {named}); add the origin to the token's 'origins' in "
            "CDPULSE_API_TOKENS, or send with a token that names it",
        },
        status=403,
    )
    return answer
