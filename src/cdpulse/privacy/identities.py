"""Finding a customer by a personal trait without storing it: the identity index maps a
trait's pseudonym (``hmac:…`` of an email or phone) to the customer who gave it last.

Support desks and erasure requests arrive with an email address, not a customer id; the
index answers them while cdpulse keeps only pseudonyms. Keys live under the pseudonym's
hash tag (``{prefix}:{hmac:…}:identity``); erasure removes the customer's entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdpulse.privacy.pseudonyms import PREFIX


def pseudonyms_of(traits: Mapping[str, tuple[int, Any]], personal: frozenset[str]) -> list[str]:
    """The pseudonyms of the personal ones among a profile's ``traits`` (name -> (time,
    value))."""
    return sorted(
        value
        for name, (_, value) in traits.items()
        if name in personal and isinstance(value, str) and value.startswith(PREFIX)
    )
