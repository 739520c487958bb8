"""Consent: what each purpose allows, as one pure function every feature calls.

A ``consent_updated`` event sets the purposes ``analytics``, ``personalization`` and
``marketing`` (last writer wins by event time, a refusal wins a tie: ``rules``). The
matrix below is what cdpulse does when a purpose is withheld; README repeats it.

==================  ===============================================================
withheld purpose    what cdpulse does for that customer
==================  ===============================================================
analytics           the profile is minimised after every event and merge: only the
                    consent record, identity links, pseudonymised traits and the
                    bookkeeping that keeps writes exactly-once are kept (what is
                    needed to honour the request); no counters, windows, sessions,
                    cart, affinity, churn history, labels (churn's, and campaign
                    response's not decided by the refusal) or recommender learning;
                    its orders still count in the shop's demand (``kpis.fold``)
personalization     no churn score (cleared), no campaign-response propensity, no
                    recommendation lists (stream or HTTP, which answers 451), item
                    events are not forwarded to the recommender's learner
marketing           ``allows(profile, "marketing")`` is False: triggers and offers
                    must not fire (the triggers feature calls this function)
==================  ===============================================================

Without any consent event a purpose has its default: analytics and personalization
are granted (the service the customer asked for), marketing is not (opt-in).

>>> from cdpulse.profile.model import Profile
>>> p = Profile(id="C-1")
>>> allows(p, "analytics"), allows(p, "personalization"), allows(p, "marketing")
(True, True, False)
>>> p.consent["marketing"] = (1_700_000_000_000, True)
>>> allows(p, "marketing")
True
"""

from __future__ import annotations

from typing import Literal, Protocol

Purpose = Literal["analytics", "personalization", "marketing"]
PURPOSES: tuple[Purpose, ...] = ("analytics", "personalization", "marketing")
DEFAULTS: dict[str, bool] = {"analytics": True, "personalization": True, "marketing": False}


class Consenting(Protocol):
    """Anything that records consent as the profile does: purpose -> (time, granted)."""

    @property
    def consent(self) -> dict[str, tuple[int, bool]]: ...


def allows(profile: Consenting | None, purpose: Purpose) -> bool:
    """Whether ``profile``'s newest consent allows ``purpose`` (its default if never set)."""
    if purpose not in DEFAULTS:
        raise ValueError(f"unknown consent purpose {purpose!r}; use one of {PURPOSES}")
    if profile is None:
        return DEFAULTS[purpose]
    state = profile.consent.get(purpose)
    return DEFAULTS[purpose] if state is None else state[1]


def withheld_at(profile: Consenting, purpose: Purpose) -> int | None:
    """The event time ``purpose`` was withheld at, if it is withheld now."""
    state = profile.consent.get(purpose)
    return state[0] if state is not None and not state[1] else None
