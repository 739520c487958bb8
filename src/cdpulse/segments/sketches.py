"""The customer base's RFM distribution as three KLL quantile sketches (Apache DataSketches).

What is sketched is each customer's *current* (last order time, orders, net revenue),
taken from the order summaries kept beside the profiles. A KLL sketch counts every
value it is fed, so feeding it every change would count a customer once per order;
instead the sketches are rebuilt from a scan of the summaries every
``rfm_refresh_seconds`` by the learner (a Redis lock: one at a time) and published, and
the worker and the api score with the newest. Recency is sketched as the last order
*time*: ranks by time are ranks by recency at any ``as_of``, so the sketch does not age
between rebuilds.

Approximations, honestly: a score can lag the base by one refresh interval, and a
value's rank carries the KLL error (about 1.3% of the base at k=200, with 99%
confidence), so a customer within that distance of a quintile edge may get the
neighbouring score. Sketches of disjoint scans merge (``merge``) when the scan is split.

>>> base = RfmSketches.build([(1_000 * i, 1 + i % 3, 10.0 * i) for i in range(1, 101)])
>>> base.customers, base.score(100_000, 3, 1000.0), base.score(1_000, 1, 10.0)
(100, RfmScore(r=5, f=4, m=5), RfmScore(r=1, f=1, m=1))
>>> RfmSketches.from_bytes(base.to_bytes()).score(50_000, 3, 500.0) == base.score(50_000, 3, 500.0)
True
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from datasketches import kll_doubles_sketch

from cdpulse.profile.model import Profile
from cdpulse.segments.rfm import RfmScore, quintile, score_of

K = 200  # DataSketches' default: ~1.3% normalized rank error, a few KB serialized
_HEADER = struct.Struct(">III")


@dataclass(slots=True)
class RfmSketches:
    """Quantile sketches of last order time, orders and net revenue over customers."""

    recency: kll_doubles_sketch
    frequency: kll_doubles_sketch
    monetary: kll_doubles_sketch

    @classmethod
    def empty(cls) -> RfmSketches:
        return cls(kll_doubles_sketch(K), kll_doubles_sketch(K), kll_doubles_sketch(K))

    @classmethod
    def build(cls, customers: Iterable[tuple[int, int, float]]) -> RfmSketches:
        """Sketches of (last order time ms, orders, net revenue), one tuple per customer."""
        sketches = cls.empty()
        for last_order_at, orders, net_revenue in customers:
            sketches.recency.update(float(last_order_at))
            sketches.frequency.update(float(orders))
            sketches.monetary.update(float(net_revenue))
        return sketches

    @property
    def customers(self) -> int:
        return int(self.recency.n)

    def merge(self, other: RfmSketches) -> None:
        """Add a disjoint part of the base (another worker's scan) into these sketches."""
        self.recency.merge(other.recency)
        self.frequency.merge(other.frequency)
        self.monetary.merge(other.monetary)

    def score(self, last_order_at: int, orders: int, net_revenue: float) -> RfmScore | None:
        """The customer's quintile scores against the base; None when the base is empty."""
        if self.recency.is_empty():
            return None
        # Ranks strictly below (inclusive=False): ties share the lowest rank.
        return score_of(
            quintile(self.recency.get_rank(float(last_order_at), False)),
            quintile(self.frequency.get_rank(float(orders), False)),
            quintile(self.monetary.get_rank(float(net_revenue), False)),
        )

    def score_profile(self, profile: Profile) -> RfmScore | None:
        """``score`` of the profile's order summary (``OrderSummary.of``), not built: None
        without an order (or when the base is empty)."""
        if not profile.orders or profile.first_order_at is None or profile.last_order_at is None:
            return None
        return self.score(profile.last_order_at, profile.orders, profile.revenue - profile.refunded)

    def to_bytes(self) -> bytes:
        parts = [self.recency.serialize(), self.frequency.serialize(), self.monetary.serialize()]
        return _HEADER.pack(*(len(p) for p in parts)) + b"".join(parts)

    @classmethod
    def from_bytes(cls, blob: bytes) -> RfmSketches:
        sizes = _HEADER.unpack_from(blob)
        offset = _HEADER.size
        parts = []
        for size in sizes:
            parts.append(kll_doubles_sketch.deserialize(blob[offset : offset + size]))
            offset += size
        if offset != len(blob):
            raise ValueError(f"RFM sketch blob is {len(blob)} bytes; its header says {offset}")
        return cls(*parts)
