"""Which identify traits a profile keeps, and in what form.

Only traits on the allow-list are kept; the rest are dropped at ingestion (and counted
by the worker). Personal traits on the allow-list (email, phone) are kept as keyed
pseudonyms, never as the raw value, so a profile, a log line or an output record
cannot leak them.

>>> from cdpulse.privacy.pseudonyms import Pseudonymizer
>>> policy = TraitPolicy(frozenset({"email", "country"}), frozenset({"email"}),
...                      Pseudonymizer(b"k"))
>>> kept = policy.admit({"email": "a@x.io", "country": "DE", "shoe_size": 42})
>>> sorted(kept), kept["email"][:5], kept["country"]
(['country', 'email'], 'hmac:', 'DE')
>>> policy.dropped({"email": "a@x.io", "shoe_size": 42})
1
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cdpulse.privacy.pseudonyms import PREFIX, Pseudonymizer

TraitValue = str | float | int | bool | None

DEFAULT_ALLOWED = frozenset({"email", "phone", "country", "language", "plan"})
DEFAULT_PERSONAL = frozenset({"email", "phone"})


@dataclass(frozen=True, slots=True)
class TraitPolicy:
    """The allow-list, the personal traits among them, and the pseudonym key."""

    allowed: frozenset[str] = DEFAULT_ALLOWED
    personal: frozenset[str] = DEFAULT_PERSONAL
    pseudonymizer: Pseudonymizer = field(default_factory=lambda: Pseudonymizer(b""))

    def admit(self, traits: Mapping[str, TraitValue]) -> dict[str, TraitValue]:
        """The traits a profile may keep: allowed ones, personal ones pseudonymised."""
        kept: dict[str, TraitValue] = {}
        for name, value in traits.items():
            if name not in self.allowed:
                continue
            if name in self.personal and value is not None:
                text = str(value)
                # Already a pseudonym: the collector pseudonymises before Kafka sees it.
                kept[name] = (
                    text if text.startswith(PREFIX) else self.pseudonymizer.pseudonym(name, text)
                )
            else:
                kept[name] = value
        return kept

    def dropped(self, traits: Mapping[str, TraitValue]) -> int:
        """How many traits ``admit`` drops, besides the sealed copies of personal ones
        (``email_sealed``), which travel in events for other consumers but are not kept."""
        return sum(
            name not in self.allowed and name.removesuffix("_sealed") not in self.personal
            for name in traits
        )
