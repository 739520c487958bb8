"""CSV import: rows and grouped orders to order_completed, skipped rows, the subcommand."""

from __future__ import annotations

import argparse
import importlib.util
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdpulse.cli import import_cmd
from cdpulse.cli.main import CliError
from cdpulse.contract.validation import Rejection, validate
from cdpulse.importer import (
    CsvFormat,
    ImportedOrder,
    OrderColumns,
    OrderDefaults,
    SkippedRow,
    UnknownColumn,
    UnreadableFile,
    read_orders,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
COLUMNS = OrderColumns(customer="customer", time="time", amount="amount")


def _write(tmp_path: Path, text: str, name: str = "orders.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _read(path: Path, columns: OrderColumns = COLUMNS, **format_: Any) -> list[Any]:
    return list(read_orders(path, columns, CsvFormat(**format_), now=NOW))


def _events(results: list[Any]) -> list[dict[str, Any]]:
    return [r.event for r in results if isinstance(r, ImportedOrder)]


# --- good rows -----------------------------------------------------------------------------


def test_each_row_becomes_a_valid_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "customer,time,amount\n"
        "C-1,2026-02-03,19.90\n"
        "C-2,2026-02-03T10:15:00Z,5\n"
        "C-3,2026-02-03T12:00:00+02:00,0.10\n"
        "C-4,2026-02-03 08:30:00.250,1234.5\n"
        "C-5,19970101,11.77\n",
    )
    results = _read(path)
    assert all(isinstance(r, ImportedOrder) for r in results)
    events = _events(results)
    assert [r.line for r in results] == [2, 3, 4, 5, 6]
    assert [e["timestamp"] for e in events] == [
        "2026-02-03T00:00:00.000Z",
        "2026-02-03T10:15:00.000Z",
        "2026-02-03T10:00:00.000Z",
        "2026-02-03T08:30:00.250Z",
        "1997-01-01T00:00:00.000Z",
    ]
    assert [e["properties"]["revenue"] for e in events] == [19.9, 5.0, 0.1, 1234.5, 11.77]
    for event in events:
        assert not isinstance(validate(event, now=NOW), Rejection)
        assert event["type"] == "order_completed"
        assert event["channel"] == "store"
        props = event["properties"]
        assert props["currency"] == "EUR"
        assert props["items"] == [
            {
                "product_id": "import",
                "category": "unknown",
                "price": props["revenue"],
                "quantity": 1,
            }
        ]
    assert [e["customer_id"] for e in events] == ["C-1", "C-2", "C-3", "C-4", "C-5"]


def test_currency_channel_category_and_time_format(tmp_path: Path) -> None:
    path = _write(tmp_path, "who;when;paid;what\nC-1;03/02/2026 14:05;7.50;books\nC-2;;1;\n")
    columns = OrderColumns("who", "when", "paid", category="what")
    results = list(
        read_orders(
            path,
            columns,
            CsvFormat(delimiter=";", time_format="%d/%m/%Y %H:%M"),
            OrderDefaults(currency="USD", channel="call_center"),
            now=NOW,
        )
    )
    [event] = _events(results)
    assert event["timestamp"] == "2026-02-03T14:05:00.000Z"
    assert event["channel"] == "call_center"
    assert event["properties"]["currency"] == "USD"
    assert event["properties"]["items"][0]["category"] == "books"
    assert results[1] == SkippedRow(3, "time '' does not match --time-format '%d/%m/%Y %H:%M'")


def test_quoted_fields_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes('\ufeffcustomer,time,amount\n"Doe, J.",2026-01-05,"12.00"\n'.encode())
    [order] = _read(path)
    assert order.event["customer_id"] == "Doe, J."


def test_blank_lines_are_ignored(tmp_path: Path) -> None:
    path = _write(tmp_path, "customer,time,amount\n\nC-1,2026-01-05,1\n,,\n\n")
    assert [r.line for r in _read(path)] == [3]


# --- idempotent ids ------------------------------------------------------------------------


def test_reimporting_gives_the_same_ids(tmp_path: Path) -> None:
    text = "customer,time,amount\nC-1,2026-01-05,1\nC-1,2026-01-05,1\n"
    first = _events(_read(_write(tmp_path, text)))
    (tmp_path / "copy").mkdir()
    again = _events(_read(_write(tmp_path / "copy", text)))
    assert [e["event_id"] for e in first] == [e["event_id"] for e in again]
    # two identical rows are two purchases: the line number tells them apart
    assert first[0]["event_id"] != first[1]["event_id"]
    assert first[0]["event_id"].startswith("import-") and len(first[0]["event_id"]) == 23
    other = _events(_read(_write(tmp_path, text, name="other.csv")))
    assert other[0]["event_id"] != first[0]["event_id"]


# --- grouped orders ------------------------------------------------------------------------


def test_rows_of_one_order_become_one_event(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "order,customer,time,amount,category\n"
        "A-1,C-1,2026-01-05T10:00:00Z,10.10,books\n"
        "B-7,C-2,2026-01-06,3,toys\n"
        "A-1,C-1,2026-01-05T09:59:00Z,0.20,books\n"
        "A-1,C-1,2026-01-05T10:01:00Z,5.00,music\n",
    )
    columns = OrderColumns("customer", "time", "amount", order="order", category="category")
    results = _read(path, columns)
    assert [r.line for r in results] == [2, 3]
    first, second = _events(results)
    assert first["properties"]["order_id"] == "A-1"
    assert first["timestamp"] == "2026-01-05T09:59:00.000Z"  # the earliest row
    assert first["properties"]["revenue"] == 15.3
    assert first["properties"]["items"] == [
        {"product_id": "import", "category": "books", "price": 10.3, "quantity": 1},
        {"product_id": "import", "category": "music", "price": 5.0, "quantity": 1},
    ]
    assert second["properties"]["order_id"] == "B-7"
    reimported = _events(_read(path, columns))
    assert [e["event_id"] for e in reimported] == [first["event_id"], second["event_id"]]


def test_an_order_row_of_another_customer_is_skipped(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "order,customer,time,amount\nA-1,C-1,2026-01-05,1\nA-1,C-9,2026-01-05,2\n"
    )
    results = _read(path, OrderColumns("customer", "time", "amount", order="order"))
    assert results[0] == SkippedRow(3, "order 'A-1' belongs to customer 'C-1' (line 2), not 'C-9'")
    assert results[1].event["properties"]["revenue"] == 1.0


@settings(max_examples=50, deadline=None)
@given(
    amounts=st.lists(
        st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False), min_size=1
    )
)
def test_grouped_revenue_is_the_exact_sum(tmp_path_factory: Any, amounts: list[Decimal]) -> None:
    rows = "".join(f"O-1,C-1,2026-01-05,{amount}\n" for amount in amounts)
    path = _write(tmp_path_factory.mktemp("sum"), "order,customer,time,amount\n" + rows)
    [order] = _read(path, OrderColumns("customer", "time", "amount", order="order"))
    assert Decimal(str(order.event["properties"]["revenue"])) == sum(amounts)
    assert not isinstance(validate(order.event, now=NOW), Rejection)


# --- rows that cannot be read --------------------------------------------------------------


def test_bad_rows_are_skipped_with_their_line_and_reason(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "customer,time,amount\n"
        "C-1,2026-01-05,1\n"
        "C-2,2026-01-05\n"
        "C-3,yesterday,1\n"
        "C-4,2026-01-05,abc\n"
        "C-5,2026-01-05,-3\n"
        " ,2026-01-05,1\n"
        "C-7,2026-01-05,NaN\n"
        "C-8,2026-01-05,\n"
        "C-9,2099-01-05,1\n"
        "C-10,2026-01-05,2\n",
    )
    results = _read(path)
    skipped = [r for r in results if isinstance(r, SkippedRow)]
    assert [(s.line, s.reason) for s in skipped[:8]] == [
        (3, "row has 2 fields; column 'amount' is missing"),
        (4, "time 'yesterday' does not match ISO 8601 or YYYYMMDD"),
        (5, "amount 'abc' is not a number"),
        (6, "amount -3 is negative"),
        (7, "customer id is empty"),
        (8, "amount 'NaN' is not a number"),
        (9, "amount is empty"),
        (10, skipped[7].reason),
    ]
    assert "ahead of now" in skipped[7].reason  # the contract refuses the future
    assert [r.line for r in results if isinstance(r, ImportedOrder)] == [2, 11]


def test_an_unknown_column_names_the_header(tmp_path: Path) -> None:
    path = _write(tmp_path, "customer,time,total\nC-1,2026-01-05,1\n")
    with pytest.raises(UnknownColumn) as error:
        read_orders(path, COLUMNS)
    assert error.value.role == "amount"
    assert "'amount'" in str(error.value)
    assert "'customer', 'time', 'total'" in str(error.value)


def test_a_file_in_another_encoding_says_which_flag_to_use(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("customer,time,amount\nMüller,2026-01-05,1\n".encode("latin-1"))
    with pytest.raises(UnreadableFile, match="--encoding"):
        _read(path)
    [order] = _read(path, encoding="latin-1")
    assert order.event["customer_id"] == "Müller"


# --- CDNOW: whitespace columns, with and without a header ----------------------------------


def test_cdnow_style_whitespace_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        " 00004 0001 19970101  2   29.33\r\n 00004 0001 19970118  2   29.73\r\n",
        name="CDNOW_sample.txt",
    )
    results = _read(path, OrderColumns("1", "3", "5"), delimiter="whitespace", header=False)
    events = _events(results)
    assert [e["customer_id"] for e in events] == ["00004", "00004"]
    assert [e["properties"]["revenue"] for e in events] == [29.33, 29.73]
    with pytest.raises(UnknownColumn, match="numbered 1 to 5"):
        read_orders(path, OrderColumns("1", "3", "6"), CsvFormat("whitespace", header=False))


def test_the_real_cdnow_master_file_imports_whole() -> None:
    # found, not imported: the data file is all we need from the lifetimes wheel
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.origin is not None, (
        "the lifetimes wheel ships CDNOW: `make venv` installs it (pip install --no-deps lifetimes)"
    )
    path = Path(spec.origin).parent / "datasets" / "CDNOW_master.txt"
    columns = OrderColumns("customer_id", "date", "dollar_value")
    results = list(read_orders(path, columns, CsvFormat(delimiter="whitespace"), now=NOW))
    assert len(results) == 69_659
    events = _events(results)
    assert len(events) == len(results)
    assert len({e["customer_id"] for e in events}) == 23_570


# --- the subcommand ------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cdpulse")
    import_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def _cli(path: Path, *extra: str) -> list[str]:
    flags = ["--customer-col", "customer", "--time-col", "time", "--amount-col", "amount"]
    return ["import", "csv", str(path), *flags, *extra]


def test_import_csv_writes_json_lines_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "customer,time,amount\nC-1,2026-01-05,1\nC-2,2026-01-06,2\n")
    out = tmp_path / "events.jsonl"
    assert _run(_cli(path, "--out", str(out))) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert events == _events(_read(path))
    assert "2 rows read, 2 events" in capsys.readouterr().err


def test_import_csv_reports_skipped_rows_and_exits_1(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    path = _write(tmp_path, "customer,time,amount\nC-1,2026-01-05,1\nC-2,soon,2\n")
    assert _run(_cli(path)) == 1
    captured = capsysbinary.readouterr()
    assert len(captured.out.splitlines()) == 1
    err = captured.err.decode()
    assert f"{path}:3: skipped: time 'soon' does not match ISO 8601 or YYYYMMDD" in err
    assert "1 rows skipped" in err


def test_import_csv_names_an_unknown_column_and_its_flag(tmp_path: Path) -> None:
    path = _write(tmp_path, "client,time,amount\nC-1,2026-01-05,1\n")
    out = tmp_path / "events.jsonl"
    with pytest.raises(CliError) as error:
        _run(_cli(path, "--out", str(out)))
    message = str(error.value)
    assert "'customer'" in message
    assert "'client', 'time', 'amount'" in message
    assert "--customer-col" in message
    assert not out.exists()  # nothing is written when the columns are wrong


def test_import_csv_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="no such file"):
        _run(_cli(tmp_path / "nope.csv"))


def test_import_csv_groups_by_order_and_reads_cdnow(tmp_path: Path) -> None:
    path = _write(tmp_path, "00001 19970101 1 11.77\n00001 19970101 2 8.00\n00002 19970112 1 12\n")
    out = tmp_path / "events.jsonl"
    argv = ["import", "csv", str(path), "--delimiter", "whitespace", "--no-header"]
    argv += ["--customer-col", "1", "--time-col", "2", "--amount-col", "4", "--order-col", "2"]
    assert _run([*argv, "--currency", "USD", "--out", str(out)]) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["properties"]["revenue"] for e in events] == [19.77, 12.0]
    assert {e["properties"]["currency"] for e in events} == {"USD"}


@pytest.mark.parametrize(
    "argv",
    [["--delimiter", "ab"], ["--currency", "euro"], ["--out", "x", "--produce"]],
)
def test_import_csv_refuses_bad_flags(tmp_path: Path, argv: list[str]) -> None:
    path = _write(tmp_path, "customer,time,amount\n")
    with pytest.raises(SystemExit) as exit_info:
        _run(_cli(path, *argv))
    assert exit_info.value.code == 2


class _FakeProducer:
    """Records sends; refuses the customer named ``refuse`` as the real producer would."""

    sent: list[dict[str, Any]] = []

    def __enter__(self) -> _FakeProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def send(self, event: dict[str, Any]) -> str:
        from cdpulse.contract.validation import FUTURE_TIMESTAMP
        from cdpulse.producer import ProducerRejected

        if event["customer_id"] == "refuse":
            raise ProducerRejected(Rejection(FUTURE_TIMESTAMP, "timestamp is ahead of now"))
        self.sent.append(event)
        return "cdp.transactions"


def test_import_csv_produces_to_kafka(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    producer_module = pytest.importorskip("cdpulse.producer")
    monkeypatch.setattr(
        producer_module.Producer, "from_settings", classmethod(lambda cls, s: _FakeProducer())
    )
    _FakeProducer.sent = []
    path = _write(tmp_path, "customer,time,amount\nC-1,2026-01-05,1\nrefuse,2026-01-05,2\n")
    assert _run(_cli(path, "--produce")) == 1
    assert [e["customer_id"] for e in _FakeProducer.sent] == ["C-1"]
    err = capsys.readouterr().err
    assert f"{path}:3: skipped: timestamp is ahead of now" in err
    assert "to Kafka" in err


def test_import_runs_through_the_cdpulse_entry_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cdpulse.cli.main import main

    path = _write(tmp_path, "client,time,amount\nC-1,2026-01-05,1\n")
    assert main(_cli(path)) == 2
    assert "cdpulse import:" in capsys.readouterr().err
