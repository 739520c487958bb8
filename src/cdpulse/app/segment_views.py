"""HTTP views of segments: their sizes, and their members page by page."""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust
from faust.web import Request, Response, View

from cdpulse.segments.rfm import SEGMENTS as RFM_SEGMENTS

if TYPE_CHECKING:
    from cdpulse.app.auth import Guard
    from cdpulse.segments.definitions import SegmentBook
    from cdpulse.store.segments import RedisMembershipStore

MAX_PAGE = 1000


def register_segment_views(
    app: faust.App, book: SegmentBook, store: RedisMembershipStore, guarded: Guard
) -> None:
    """Add ``/v1/segments`` and ``/v1/segments/{name}/members`` to the app (scope ``read``)."""
    described = {s.id: f"RFM: {s.name}" for s in RFM_SEGMENTS} if book.rfm else {}
    described |= {s.name: s.description or s.condition.source for s in book.segments}

    @app.page("/v1/segments")
    class SegmentsView(View):
        @guarded("read")
        async def get(self, request: Request) -> Response:
            sizes = await store.sizes(list(book.names))
            sketches = store.sketches
            return self.json(
                {
                    "segments": [
                        {
                            "name": name,
                            "kind": "custom" if name in {s.name for s in book.segments} else "rfm",
                            "description": described[name],
                            "size": sizes[name],
                        }
                        for name in book.names
                    ],
                    "rfm_customers": sketches.customers if sketches is not None else 0,
                }
            )

    @app.page("/v1/segments/{name}/members")
    class MembersView(View):
        @guarded("read")
        async def get(self, request: Request, name: str) -> Response:
            if name not in described:
                return self.json(
                    {"error": f"no segment {name!r}; GET /v1/segments lists them"}, status=404
                )
            raw = request.query.get("limit", "100")
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
                return self.json(
                    {"error": f"limit must be an integer from 1 to {MAX_PAGE}, got {raw!r}"},
                    status=400,
                )
            after = request.query.get("after", "")
            members = await store.members(name, after, int(raw))
            # The last id of a full page is the cursor of the next; members added or removed
            # meanwhile are seen or not, but no member is listed twice.
            following = members[-1] if len(members) == int(raw) else None
            return self.json({"segment": name, "members": members, "next": following})
