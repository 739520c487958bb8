"""Which identify traits a profile keeps, and in what form.

Only traits on the allow-list are kept; the rest are dropped at ingestion (and counted
by the worker). Personal traits on the allow-list (email, phone) are kept as keyed
pseudonyms whatever their JSON type (a phone number given as a number too), never as
the raw value, so a profile, a log line or an output record cannot leak them.

>>> from cdpulse.privacy.pseudonyms import Pseudonymizer
>>> policy = TraitPolicy(frozenset({"email", "phone", "country"}),
...                      frozenset({"email", "phone"}), Pseudonymizer(b"k"))
>>> kept = policy.admit({"email": "a@x.io", "phone": 4915112345678, "country": "DE",
...                      "shoe_size": 42})
>>> sorted(kept), kept["email"][:5], kept["country"]
(['country', 'email', 'phone'], 'hmac:', 'DE')
>>> kept["phone"] == policy.pseudonym("phone", "4915112345678")
True
>>> policy.dropped({"email": "a@x.io", "shoe_size": 42})
1
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cdpulse.privacy.pseudonyms import Pseudonymizer, canonical, is_pseudonym
from cdpulse.settings import Settings

TraitValue = str | float | int | bool | None

DEFAULT_ALLOWED = frozenset({"email", "phone", "country", "language", "plan"})
DEFAULT_PERSONAL = frozenset({"email", "phone"})


@dataclass(frozen=True, slots=True)
class TraitPolicy:
    """The allow-list, the personal traits among them, and the pseudonym key."""

    allowed: frozenset[str] = DEFAULT_ALLOWED
    personal: frozenset[str] = DEFAULT_PERSONAL
    pseudonymizer: Pseudonymizer = field(default_factory=lambda: Pseudonymizer(b""))

    @classmethod
    def from_settings(cls, settings: Settings) -> TraitPolicy:
        return cls(
            frozenset(settings.trait_allow_list),
            frozenset(settings.personal_traits),
            Pseudonymizer(settings.pseudonym_key.get_secret_value().encode()),
        )

    def pseudonym(self, name: str, value: object) -> str:
        """The pseudonym of personal trait ``name`` holding ``value`` of any JSON type
        (its ``canonical`` text); a pseudonym already is kept, not hashed twice."""
        if is_pseudonym(value):
            return str(value)
        return self.pseudonymizer.pseudonym(name, canonical(value))

    def admit(self, traits: Mapping[str, TraitValue]) -> dict[str, TraitValue]:
        """The traits a profile may keep: allowed ones, personal ones pseudonymised."""
        kept: dict[str, TraitValue] = {}
        for name, value in traits.items():
            if name not in self.allowed:
                continue
            # Whatever its type: a phone number given as a number is still a phone number.
            if name in self.personal and value is not None:
                kept[name] = self.pseudonym(name, value)
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
