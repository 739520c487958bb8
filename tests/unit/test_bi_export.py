"""The BI export's rows: every column against the oracle's profile from the same events,
typed as the schema says through Parquet and CSV, consent and pseudonyms respected."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from itertools import count
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from cdpulse.bi.files import file_name, stamp
from cdpulse.bi.tables import (
    SEGMENT_SCHEMA,
    exportable,
    profile_row,
    profile_schema,
    segment_row,
)
from cdpulse.contract.validation import Rejection, validate
from cdpulse.models.churn.scoring import profile_document
from cdpulse.privacy.pseudonyms import Pseudonymizer
from cdpulse.privacy.traits import TraitPolicy
from cdpulse.profile.model import Profile
from cdpulse.profile.rules import Rules, apply, new_profile
from tests import oracle
from tests.bi_rows import columns

NOW = datetime(2026, 11, 26, tzinfo=UTC)
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HORIZON = 90.0
TRAITS = TraitPolicy(pseudonymizer=Pseudonymizer(oracle.PSEUDONYM_KEY))
RULES = Rules(traits=TRAITS)
SCHEMA = profile_schema(TRAITS.allowed, HORIZON)
EMAIL = "Alice@Example.com"
_ids = count()


def ev(kind: str, t: int, **properties: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"e{next(_ids)}",
        "type": kind,
        "timestamp": t,
        "channel": properties.pop("channel", "web"),
        "customer_id": "C-1",
    }
    if kind == "identify":
        event["anonymous_id"] = "a-1"
    if properties:
        event["properties"] = properties
    return event


def shop(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    item = {"product_id": "P1", "category": "shoes", "price": 20.0, "quantity": 2}
    return [
        ev("page_viewed", T0, url="/"),
        ev("identify", T0 + 60_000, traits={"email": EMAIL, "country": "DE", "plan": 3}),
        ev("product_added", T0 + 120_000, **item),
        ev("order_completed", T0 + 3 * oracle.HOUR, order_id="O1", revenue=40.0,
           currency="EUR", items=[item], channel="app"),
        ev("product_added", T0 + 5 * oracle.DAY, **{**item, "quantity": 1}),
        ev("order_refunded", T0 + 6 * oracle.DAY, order_id="O1", amount=12.5, currency="EUR"),
        *extra,
    ]  # fmt: skip


def applied(events: list[dict[str, Any]]) -> Profile:
    profile = new_profile("C-1")
    for event in events:
        parsed = validate(event, now=NOW)
        assert not isinstance(parsed, Rejection), parsed
        apply(profile, parsed, RULES)
    return profile


def row_of(profile: Profile, as_of: int) -> dict[str, Any]:
    document = profile_document(profile, as_of, RULES, None, None, HORIZON)
    return profile_row(profile, document, as_of, TRAITS, HORIZON)


def test_a_row_is_the_oracles_profile_flattened_column_by_column() -> None:
    events = shop()
    as_of = T0 + 10 * oracle.DAY
    got = row_of(applied(events), as_of)
    assert set(got) == set(SCHEMA.names)
    document = oracle.profile("C-1", events, as_of)
    document["churn"] = {"risk": None, "model_version": None}  # no model: no score
    assert got == columns(document, TRAITS.allowed)
    assert got["orders"] == 1 and got["revenue"] == 40.0 and got["refunds_amount"] == 12.5
    assert got["rfm_monetary"] == 27.5 and got["cart_items"] == 1


def test_rows_keep_their_types_through_parquet_and_csv() -> None:
    rows = [row_of(applied(shop()), T0 + 10 * oracle.DAY), row_of(new_profile("C-2"), T0)]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    assert pq.read_table(io.BytesIO(buffer.getvalue())).equals(table)
    text = io.BytesIO()
    pa_csv.write_csv(table, text)
    # a null is an empty cell, text is quoted
    options = pa_csv.ConvertOptions(column_types=SCHEMA, strings_can_be_null=True)
    back = pa_csv.read_csv(io.BytesIO(text.getvalue()), convert_options=options)
    assert back.schema == SCHEMA and back.to_pylist() == table.to_pylist()
    assert table.column("as_of")[0].as_py() == datetime(2026, 1, 11, tzinfo=UTC)
    assert table.schema.field("first_seen").type == pa.timestamp("ms", tz="UTC")


def test_personal_traits_are_pseudonyms_and_never_in_clear() -> None:
    profile = applied(shop())
    row = row_of(profile, T0 + 10 * oracle.DAY)
    assert row["trait_email"] == TRAITS.pseudonym("email", "alice@example.com")
    assert row["trait_country"] == "DE" and row["trait_plan"] == "3"
    assert row["trait_phone"] is None
    assert not any(isinstance(v, str) and "example.com" in v.lower() for v in row.values())
    # a profile stored before its traits were pseudonymised still leaves with a pseudonym
    profile.traits["phone"] = (T0, "+49 151 1234")
    row = row_of(profile, T0 + 10 * oracle.DAY)
    assert row["trait_phone"] == TRAITS.pseudonym("phone", "+491511234")


@pytest.mark.parametrize(
    ("purposes", "exported", "scored"),
    [
        ({}, True, True),
        ({"personalization": False}, True, False),
        ({"analytics": False}, False, True),
    ],
)  # fmt: skip
def test_consent_decides_what_leaves(
    purposes: dict[str, bool], exported: bool, scored: bool
) -> None:
    profile = applied(shop(ev("consent_updated", T0 + 7 * oracle.DAY, purposes=purposes)))
    assert exportable(profile) is exported
    document = profile_document(profile, T0 + 7 * oracle.DAY, RULES, None, None, HORIZON)
    assert (document["churn"] is not None) is scored


def test_segment_rows_and_file_names() -> None:
    profile = applied(shop())
    row = segment_row("loyal", profile, T0)
    assert row == {
        "segment": "loyal",
        "id": "C-1",
        "customer_id": "C-1",
        "as_of": profile.last_seen,
    }
    assert pa.Table.from_pylist([row], schema=SEGMENT_SCHEMA).num_rows == 1
    assert stamp(T0 + 1) == "20260101T000000001Z"
    assert file_name("profiles", "csv", T0, None) == "profiles-20260101T000000000Z.csv"
    assert file_name("profiles", "parquet", T0 + 1, T0).endswith(
        "-since-20260101T000000000Z.parquet"
    )
