"""Customer lifetime value: expected purchases (BG/NBD) times expected spend (Gamma-Gamma).

The value of a customer over the next ``horizon`` days is the number of purchases BG/NBD
expects from them times the value per purchase Gamma-Gamma expects, undiscounted (Fader,
Hardie & Lee 2005, "RFM and CLV"). Multiplying is sound because Gamma-Gamma assumes spend
independent of purchase frequency. Both models' parameters are fitted on every
customer's summary at once (``LifetimeValue.fit``, periodically) and then score one
customer at a time from their profile (``summary_from_profile`` and ``predict``).

Time is in **days** throughout the engine: the summaries, ``alpha`` and ``horizon``. And
``m`` is the average of **all** of a customer's orders, the first included (the profile
keeps the revenue sum only), so Gamma-Gamma sees x + 1 transactions per customer where
Fader, Hardie & Lee average the x repeat transactions alone.

>>> clv = LifetimeValue(
...     purchases=BGNBDParams(r=0.243, alpha=30.898, a=0.793, b=2.426),  # CDNOW, in days
...     spend=GammaGammaParams(p=6.25, q=3.74, v=15.45),
... )
>>> summary = summary_from_profile(
...     orders=3, first_order_at=0, last_order_at=200 * DAY, revenue=90.0, as_of=270 * DAY
... )
>>> summary
CustomerSummary(x=2, t_x=200.0, T=270.0, m=30.0)
>>> prediction = clv.predict(*summary, horizon=365)
>>> [round(float(value), 3) for value in prediction]
[0.705, 1.523, 46.718]
>>> print(summary_from_profile(orders=0, first_order_at=None, last_order_at=None,
...                            revenue=0.0, as_of=270 * DAY))
None
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

from cdpulse.models.clv.bgnbd import BGNBD, BGNBDParams
from cdpulse.models.clv.fit import FloatArray, column
from cdpulse.models.clv.gamma_gamma import GammaGamma, GammaGammaParams
from cdpulse.profile.windows import DAY


class CustomerSummary(NamedTuple):
    """A customer's purchase history as the models read it (times in days)."""

    x: int  # repeat orders: orders after the first
    t_x: float  # days from the first order to the last
    T: float  # days from the first order to ``as_of``
    m: float  # average order value, the first order included


class ClvPrediction(NamedTuple):
    """What the models say about customers over a horizon (one element per customer)."""

    p_alive: FloatArray  # probability the customer still buys at all
    expected_purchases: FloatArray  # purchases expected within the horizon
    expected_value: FloatArray  # expected purchases times expected value per purchase


class LifetimeValue(msgspec.Struct, frozen=True):
    """The fitted purchase and spend models that value customers; what the learner stores.

    Plain data: pickles, and round-trips through ``msgspec.json`` (decoding validates).
    """

    purchases: BGNBDParams
    spend: GammaGammaParams

    def predict(
        self,
        x: npt.ArrayLike,
        t_x: npt.ArrayLike,
        T: npt.ArrayLike,
        m: npt.ArrayLike,
        horizon: npt.ArrayLike,
    ) -> ClvPrediction:
        """P(alive), expected purchases and expected value over the next ``horizon`` days.

        Inputs as ``summary_from_profile`` gives them (``m`` averages x + 1 orders); arrays
        broadcast. The value is not discounted.
        """
        alive = self.purchases.p_alive(x, t_x, T)
        purchases = self.purchases.expected_purchases(horizon, x, t_x, T)
        value = purchases * self.spend.expected_spend(np.asarray(x) + 1, m)
        return ClvPrediction(alive, purchases, value)

    @staticmethod
    def fit(
        x: npt.ArrayLike,
        t_x: npt.ArrayLike,
        T: npt.ArrayLike,
        m: npt.ArrayLike,
        *,
        start: LifetimeValue | None = None,
    ) -> LifetimeValue:
        """Both models fitted on every customer's summary (one element per customer).

        BG/NBD uses every customer; Gamma-Gamma every customer whose average is above 0
        (an order history refunded in full says nothing about spend), as x + 1 orders
        averaging ``m``. ``start``, the previous fit, speeds up the refit. Raises
        ``ClvFitError`` when either model cannot be fitted: keep serving ``start`` then.
        """
        ms = column("m", m)
        purchases = BGNBD.fit(x, t_x, T, start=start.purchases if start else None)
        orders = np.broadcast_to(column("x", x), ms.shape) + 1
        spending = ms > 0
        spend = GammaGamma.fit(orders[spending], ms[spending], start=start.spend if start else None)
        return LifetimeValue(purchases=purchases, spend=spend)


def summary_from_profile(
    orders: int,
    first_order_at: int | None,
    last_order_at: int | None,
    revenue: float,
    as_of: int,
) -> CustomerSummary | None:
    """The models' inputs from a profile's order fields (epoch milliseconds), or None.

    ``None`` for a profile without orders: the models describe customers from their first
    purchase on. ``as_of`` is the engine's event-time now (the newest event time seen).
    Pass net revenue (``revenue - refunded``) to value customers net of refunds.

    Two ways this differs from CDNOW's published summary, on purpose:

    * The engine counts **orders**: two orders on one day are two purchases here, while
      CDNOW's summary (and lifetimes' ``summary_data_from_transaction_data``) counts days
      with a purchase. Parameters fitted on one kind of summary do not transfer to the
      other; fit and score on the engine's own.
    * ``m`` averages **all** orders, the first included, because the profile keeps the
      revenue sum only; CDNOW's averages the repeat transactions. ``LifetimeValue``
      counts x + 1 orders in it accordingly. A first order unlike the later ones (a
      welcome discount, say) then shifts the expected spend a little.
    """
    if orders < 0:
        raise ValueError(f"orders = {orders}: must be >= 0")
    if orders == 0:
        return None
    if first_order_at is None or last_order_at is None:
        raise ValueError(
            f"orders = {orders} but first_order_at = {first_order_at}, last_order_at = "
            f"{last_order_at}: a profile with orders has both times"
        )
    if not first_order_at <= last_order_at <= as_of:
        raise ValueError(
            f"first_order_at = {first_order_at}, last_order_at = {last_order_at}, as_of = "
            f"{as_of}: must be in this order (as_of is the newest event time seen)"
        )
    if not revenue >= 0:
        raise ValueError(f"revenue = {revenue}: must be >= 0")
    return CustomerSummary(
        x=orders - 1,
        t_x=(last_order_at - first_order_at) / DAY,
        T=(as_of - first_order_at) / DAY,
        m=revenue / orders,
    )
