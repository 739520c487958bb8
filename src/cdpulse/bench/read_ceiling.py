"""The read ceiling: the least an HTTP read of a profile can cost on the api's own stack.

    python -m cdpulse.bench.read_ceiling      (settings from CDPULSE_*; port CDPULSE_WEB_PORT)

The bench reads it exactly as it reads the api (same paths, same rate, same ingestion
at half capacity, same load generator), so the gap between the two is the engine's own
read path, and what the ceiling itself misses is the stack's and the machine's share.

It is the api's stack with nothing of cdpulse's read path: aiohttp (faust's web driver)
on uvloop, redis-py with hiredis over the roles' own bounded pool (``redis_client``),
the collector off. ``GET /v1/profiles/{id}`` and ``.../recommendations`` each make one
``HGET`` of the profile's stored bytes and answer them as they are: no alias to follow,
no watermark, no token check, no decoding, scoring or rendering, no faust view or
sensor. Like the roles, it freezes what lives after start-up out of the collector's sight.
"""

from __future__ import annotations

import gc

import uvloop
from aiohttp import web

from cdpulse.app.base import redis_client
from cdpulse.settings import Settings
from cdpulse.store.keys import Keys


def create(settings: Settings) -> web.Application:
    """The ceiling's aiohttp app."""
    client = redis_client(settings)
    keys = Keys(settings.redis_prefix)

    async def stored(request: web.Request) -> web.Response:
        blob = await client.hget(keys.profile(request.match_info["profile_id"]), "b")
        if not isinstance(blob, bytes):
            return web.Response(status=404)
        return web.Response(body=blob, content_type="application/octet-stream")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def closed(app: web.Application) -> None:
        await client.aclose()

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/profiles/{profile_id}", stored)
    app.router.add_get("/v1/profiles/{profile_id}/recommendations", stored)
    app.on_cleanup.append(closed)
    return app


async def _freeze(app: web.Application) -> None:
    gc.collect()
    gc.freeze()


def main() -> None:
    settings = Settings()
    app = create(settings)
    app.on_startup.append(_freeze)
    web.run_app(
        app,
        host=settings.web_host,
        port=settings.web_port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
