"""RFM: recency, frequency and monetary quintile scores (1-5) and the named segments.

Each score is the customer's quintile in the whole customer base (customers with at
least one order): 5 is the most recent last order, the most orders, the most net
revenue. With a value's rank r in [0, 1), the share of customers strictly below it,
``score = min(5, 1 + floor(5 * r))``. Ties share the lowest rank: most customers order
once, and all of them score F = 1 (with a mid-rank they would all score 2 or 3, and
New and Promising, which need F + M <= 2, could never happen).

The named segment comes from R and FM = round-half-up((F + M) / 2):

======  ==============  ==================  ==================  ===============  ===============
R \\ FM  1               2                   3                   4                5
======  ==============  ==================  ==================  ===============  ===============
5       New             Potential loyalist  Potential loyalist  Champions        Champions
4       Promising       Potential loyalist  Loyal               Loyal            Champions
3       About to sleep  About to sleep      Need attention      Loyal            Loyal
2       Hibernating     Hibernating         At risk             At risk          Can't lose them
1       Lost            Lost                At risk             Can't lose them  Can't lose them
======  ==============  ==================  ==================  ===============  ===============

>>> segment_of(5, 5, 4).name, segment_of(1, 4, 5).id, segment_of(2, 1, 1).name
('Champions', 'cant_lose_them', 'Hibernating')
>>> quintile(0.0), quintile(0.19), quintile(0.2), quintile(0.999), quintile(1.0)
(1, 1, 2, 5, 5)
>>> score_of(5, 4, 4) is score_of(5, 4, 4), score_of(5, 4, 4).segment.id
(True, 'champions')
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RfmSegment:
    """A named RFM segment: ``id`` is what topics, URLs and expressions use."""

    id: str
    name: str


CHAMPIONS = RfmSegment("champions", "Champions")
LOYAL = RfmSegment("loyal", "Loyal")
POTENTIAL_LOYALIST = RfmSegment("potential_loyalist", "Potential loyalist")
NEW = RfmSegment("new", "New")
PROMISING = RfmSegment("promising", "Promising")
NEED_ATTENTION = RfmSegment("need_attention", "Need attention")
ABOUT_TO_SLEEP = RfmSegment("about_to_sleep", "About to sleep")
AT_RISK = RfmSegment("at_risk", "At risk")
CANT_LOSE_THEM = RfmSegment("cant_lose_them", "Can't lose them")
HIBERNATING = RfmSegment("hibernating", "Hibernating")
LOST = RfmSegment("lost", "Lost")

SEGMENTS: tuple[RfmSegment, ...] = (
    CHAMPIONS,
    LOYAL,
    POTENTIAL_LOYALIST,
    NEW,
    PROMISING,
    NEED_ATTENTION,
    ABOUT_TO_SLEEP,
    AT_RISK,
    CANT_LOSE_THEM,
    HIBERNATING,
    LOST,
)

# GRID[R - 1][FM - 1]; the table in the module docstring, bottom row first.
GRID: tuple[tuple[RfmSegment, ...], ...] = (
    (LOST, LOST, AT_RISK, CANT_LOSE_THEM, CANT_LOSE_THEM),
    (HIBERNATING, HIBERNATING, AT_RISK, AT_RISK, CANT_LOSE_THEM),
    (ABOUT_TO_SLEEP, ABOUT_TO_SLEEP, NEED_ATTENTION, LOYAL, LOYAL),
    (PROMISING, POTENTIAL_LOYALIST, LOYAL, LOYAL, CHAMPIONS),
    (NEW, POTENTIAL_LOYALIST, POTENTIAL_LOYALIST, CHAMPIONS, CHAMPIONS),
)


def quintile(rank: float) -> int:
    """The 1-5 score of a normalized rank in [0, 1]."""
    # floor(5 * rank) for a positive rank; 0, a negative rank or NaN score 1.
    return min(5, 1 + int(5 * rank)) if rank > 0.0 else 1


def segment_of(r: int, f: int, m: int) -> RfmSegment:
    """The named segment of scores (r, f, m), each 1-5."""
    for name, value in (("r", r), ("f", f), ("m", m)):
        if not 1 <= value <= 5:
            raise ValueError(f"RFM score {name}={value} is outside 1-5")
    fm = (f + m + 1) // 2  # round half up: (4 + 5) / 2 -> 5
    return GRID[r - 1][fm - 1]


@dataclass(frozen=True, slots=True)
class RfmScore:
    """One customer's scores (each 1-5, checked) and segment."""

    r: int
    f: int
    m: int
    segment: RfmSegment = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segment", segment_of(self.r, self.f, self.m))

    def fields(self) -> dict[str, int | str]:
        """The ``rfm`` map segment expressions read (a new one each call)."""
        return {
            "r": self.r,
            "f": self.f,
            "m": self.m,
            "score": f"{self.r}{self.f}{self.m}",
            "segment": self.segment.id,
        }


# Every possible score, built once: scoring a customer allocates nothing.
_SCORES = tuple(
    tuple(tuple(RfmScore(r, f, m) for m in range(1, 6)) for f in range(1, 6)) for r in range(1, 6)
)


def score_of(r: int, f: int, m: int) -> RfmScore:
    """The score (r, f, m), each 1-5; the same object every time."""
    if not (1 <= r <= 5 and 1 <= f <= 5 and 1 <= m <= 5):
        segment_of(r, f, m)  # raises, naming the score out of range
    return _SCORES[r - 1][f - 1][m - 1]
