"""How profiles are stored: short field names, and profiles stored before them still read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from cdpulse.contract.mirror import Event
from cdpulse.contract.validation import Rejection, validate
from cdpulse.profile.model import STORED_NAMES, Profile, decode, encode, spelt_out
from cdpulse.profile.rules import Rules, apply, new_profile
from cdpulse.simulate.shop import Shop

NOW = datetime(2027, 1, 1, tzinfo=UTC)


def _shop_profiles() -> list[Profile]:
    """Profiles of a simulated shop: every kind of field the stream fills."""
    rules = Rules()
    profiles: dict[str, Profile] = {}
    for raw in Shop(customers=40, days=20, seed=11).events():
        event = validate(raw, now=NOW)
        if isinstance(event, Rejection):
            continue
        assert isinstance(event, Event)
        profile = profiles.setdefault(event.key, new_profile(event.key))
        apply(profile, event, rules)
    return list(profiles.values())


def _spelt(profile: Profile) -> bytes:
    """``profile`` as stored before ``STORED_NAMES``: every field under its own name."""
    spelt_out = {short: name for name, short in STORED_NAMES.items()}
    stored: dict[str, Any] = msgspec.msgpack.decode(encode(profile))
    return msgspec.msgpack.encode({spelt_out[short]: v for short, v in stored.items()})


def test_the_shop_fills_most_fields() -> None:
    """The profiles below are worth reading back: between them most fields are set."""
    profiles = _shop_profiles()
    empty = Profile(id="")
    filled = {f for f in STORED_NAMES for p in profiles if getattr(p, f) != getattr(empty, f)}
    assert len(filled) >= 25, sorted(set(STORED_NAMES) - filled)


def test_every_field_has_its_own_short_stored_name() -> None:
    fields = [f.name for f in msgspec.structs.fields(Profile)]
    assert sorted(STORED_NAMES) == sorted(fields)
    names = list(STORED_NAMES.values())
    assert len(set(names)) == len(names) and max(map(len, names)) <= 2


@pytest.mark.parametrize("profile", _shop_profiles(), ids=lambda p: p.id)
def test_a_profile_reads_back_whether_stored_with_short_names_or_spelt_out(
    profile: Profile,
) -> None:
    assert decode(encode(profile)) == profile
    spelt = _spelt(profile)
    assert decode(spelt) == profile  # a profile stored before the short names
    assert len(encode(profile)) < len(spelt)


def test_an_export_spells_every_field_out() -> None:
    profile = max(_shop_profiles(), key=lambda p: p.events)
    document = spelt_out(profile)
    assert document["id"] == profile.id and document["counts"] == profile.counts
    assert set(document) <= set(STORED_NAMES) and "events" in document
