"""Frequency caps and cooldowns, in event time, over a customer's past firings.

Pure: the history is the watch's ``fired`` list. Windows are symmetric around the new
firing's time, so a firing decided late (a cart timer behind a newer churn firing) is
held to the same limits as one decided in order.

>>> caps = Caps(per_day=2, per_week=5)
>>> marketing = {"cart", "intent"}
>>> history = [("cart", 0), ("intent", HOUR)]
>>> blocked(history, "intent", 2 * HOUR, cooldown=HOUR, caps=caps, marketing=marketing)
'capped'
>>> blocked(history, "cart", 20 * HOUR, cooldown=24 * HOUR, caps=caps, marketing=marketing)
'cooldown'
>>> blocked(history, "cart", 30 * HOUR, cooldown=HOUR, caps=caps, marketing=marketing) is None
True
"""

from __future__ import annotations

from collections.abc import Collection

from cdpulse.triggers.rules import HOUR, Caps

DAY = 24 * HOUR
WEEK = 7 * DAY


def blocked(
    history: list[tuple[str, int]],
    rule: str,
    at: int,
    *,
    cooldown: int,
    caps: Caps,
    marketing: Collection[str],
) -> str | None:
    """Why ``rule`` may not fire at ``at`` ("cooldown" or "capped"), or None when it may."""
    if any(name == rule and abs(at - t) < cooldown for name, t in history):
        return "cooldown"
    if rule in marketing:
        sent = [t for name, t in history if name in marketing]
        if sum(abs(at - t) < DAY for t in sent) >= caps.per_day:
            return "capped"
        if sum(abs(at - t) < WEEK for t in sent) >= caps.per_week:
            return "capped"
    return None


def forget(history: list[tuple[str, int]], now: int, memory: int) -> list[tuple[str, int]]:
    """The firings still within ``memory`` of ``now``; older ones can block nothing."""
    return [(name, t) for name, t in history if t > now - memory]
