"""Orders from a CRM or ERP transaction export (CSV, or CDNOW-style whitespace columns).

Each row becomes an ``order_completed`` event, or, given an order-id column, each
order does (its revenue the sum of its rows). Event ids are derived from the file name
and the row's line number or the order id, so importing the same file twice yields
the same ids and downstream deduplication drops the second copy. Rows that cannot be
read come out as ``SkippedRow`` with their line number and the reason.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "orders.csv"
>>> _ = path.write_text("customer,day,total\\nC-1,2026-02-03,19.90\\nC-2,2026-02-04,-1\\n")
>>> order, skipped = read_orders(path, OrderColumns("customer", "day", "total"))
>>> order.event["timestamp"], order.event["properties"]["revenue"], skipped
('2026-02-03T00:00:00.000Z', 19.9, SkippedRow(line=3, reason='amount -1 is negative'))
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from cdpulse.contract.validation import Rejection, validate

Event = dict[str, Any]

WHITESPACE = "whitespace"
UNKNOWN_CATEGORY = "unknown"
_MAX_ID = 128  # the contract's limit on ids
_MAX_CENTS = 10**14  # the contract's limit on money, 1e12


@dataclass(frozen=True, slots=True)
class OrderColumns:
    """Which columns hold what: names from the header, or 1-based positions without one."""

    customer: str
    time: str
    amount: str
    order: str | None = None
    category: str | None = None

    def named(self) -> list[tuple[str, str]]:
        """(role, column) for every column given: the roles match the CLI's --ROLE-col."""
        roles = [
            ("customer", self.customer),
            ("time", self.time),
            ("amount", self.amount),
            ("order", self.order),
            ("category", self.category),
        ]
        return [(role, column) for role, column in roles if column is not None]


@dataclass(frozen=True, slots=True)
class CsvFormat:
    """How the file is written."""

    delimiter: str = ","  # one character, or "whitespace" for runs of blanks (CDNOW)
    header: bool = True
    encoding: str = "utf-8-sig"  # utf-8, and a spreadsheet's byte-order mark is dropped
    time_format: str | None = None  # a strptime pattern; default ISO 8601 or YYYYMMDD


@dataclass(frozen=True, slots=True)
class OrderDefaults:
    """What the export does not say: the currency and the channel of every order."""

    currency: str = "EUR"
    channel: str = "store"


@dataclass(frozen=True, slots=True)
class SkippedRow:
    """A row the import could not read: where it is and why."""

    line: int
    reason: str


class UnknownColumn(ValueError):
    """A column asked for is not in the file; the message lists what is."""

    def __init__(self, role: str, column: str, available: list[str], header: bool) -> None:
        self.role = role
        self.column = column
        self.available = available
        if header:
            shown = ", ".join(repr(name) for name in available)
            super().__init__(f"column {column!r} is not in the header; the header has {shown}")
        else:
            super().__init__(
                f"column {column!r} is not a field position: without a header, columns are "
                f"numbered 1 to {len(available)}"
            )


class UnreadableFile(ValueError):
    """The file cannot be decoded with the given encoding."""


@dataclass(frozen=True, slots=True)
class ImportedOrder:
    """An ``order_completed`` event and the line of the row (or the order's first row)."""

    line: int
    event: Event


def read_orders(
    path: Path,
    columns: OrderColumns,
    file_format: CsvFormat = CsvFormat(),
    defaults: OrderDefaults = OrderDefaults(),
    *,
    now: datetime | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> Iterator[ImportedOrder | SkippedRow]:
    """An order per row (per order id when ``columns.order`` is set), or a ``SkippedRow``.

    The columns are checked at once, before any row is read: ``UnknownColumn`` names
    the one missing. Rows come out in file order; grouped orders come out after the
    last row, in the order they first appear. ``now`` bounds future timestamps
    (default: the clock); ``on_rows(n)`` is told every so often of ``n`` more rows read.
    """
    header_rows = _rows(path, file_format)
    first = next(header_rows, None)
    header_rows.close()
    index = {} if first is None else _column_index(columns, file_format.header, first[1])
    builder = _OrderBuilder(path.name, columns, index, file_format, defaults, now)
    return _read(path, file_format, builder, on_rows)


def _read(
    path: Path,
    file_format: CsvFormat,
    builder: _OrderBuilder,
    on_rows: Callable[[int], None] | None,
) -> Iterator[ImportedOrder | SkippedRow]:
    rows = _rows(path, file_format)
    if file_format.header:
        next(rows, None)
    read = 0
    for line, fields in rows:
        read += 1
        if on_rows is not None and read % 1000 == 0:
            on_rows(1000)
        yield from builder.add(line, fields)
    if on_rows is not None:
        on_rows(read % 1000)
    yield from builder.finish()


def _rows(path: Path, file_format: CsvFormat) -> Generator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank row."""
    with path.open(encoding=file_format.encoding, newline="") as handle:
        try:
            if file_format.delimiter == WHITESPACE:
                for line, text in enumerate(handle, start=1):
                    if fields := text.split():
                        yield line, fields
                return
            reader = csv.reader(handle, delimiter=file_format.delimiter)
            for fields in reader:
                if any(value.strip() for value in fields):
                    yield reader.line_num, fields
        except UnicodeDecodeError as exc:
            raise UnreadableFile(
                f"{path} is not {file_format.encoding} ({exc.reason}); give its encoding, "
                "e.g. --encoding latin-1"
            ) from None


def _column_index(columns: OrderColumns, header: bool, first: list[str]) -> dict[str, int]:
    """Each role's column position, from the header or the first row's width."""
    if header:
        names = [name.strip() for name in first]
        # with a name twice, the first column of that name counts
        positions = {name: i for i, name in reversed(list(enumerate(names)))}
    else:
        names = [str(i) for i in range(1, len(first) + 1)]
        positions = {name: i for i, name in enumerate(names)}
    index = {}
    for role, column in columns.named():
        if column not in positions:
            raise UnknownColumn(role, column, names, header)
        index[role] = positions[column]
    return index


@dataclass
class _Order:
    """An order being assembled from its rows."""

    line: int
    customer_id: str
    time: datetime
    cents_by_category: dict[str, int] = field(default_factory=dict)


class _OrderBuilder:
    """Turns rows into events: at once per row, or per order once all rows are read."""

    def __init__(
        self,
        file_name: str,
        columns: OrderColumns,
        index: dict[str, int],
        file_format: CsvFormat,
        defaults: OrderDefaults,
        now: datetime | None,
    ) -> None:
        self.file_name = file_name
        self.columns = columns
        self.index = index
        self.time_format = file_format.time_format
        self.defaults = defaults
        self.now = now or datetime.now(UTC)
        self.orders: dict[str, _Order] = {}

    def add(self, line: int, fields: list[str]) -> Iterator[ImportedOrder | SkippedRow]:
        try:
            values = {role: fields[i].strip() for role, i in self.index.items()}
        except IndexError:
            missing = [c for role, c in self.columns.named() if self.index[role] >= len(fields)]
            yield SkippedRow(
                line, f"row has {len(fields)} fields; column {missing[0]!r} is missing"
            )
            return
        try:
            customer_id = _id(values["customer"], "customer id")
            time = _parse_time(values["time"], self.time_format)
            cents = _parse_cents(values["amount"])
            category = values.get("category") or UNKNOWN_CATEGORY
            order_id = _id(values["order"], "order id") if "order" in values else None
        except ValueError as exc:
            yield SkippedRow(line, str(exc))
            return
        if order_id is None:
            key = _digest(f"{self.file_name}:{line}")
            order = _Order(line, customer_id, time, {category: cents})
            yield self._event(key, f"import-{key}", order)
            return
        known = self.orders.get(order_id)
        if known is None:
            self.orders[order_id] = _Order(line, customer_id, time, {category: cents})
        elif known.customer_id != customer_id:
            yield SkippedRow(
                line,
                f"order {order_id!r} belongs to customer {known.customer_id!r} (line "
                f"{known.line}), not {customer_id!r}",
            )
        else:
            known.time = min(known.time, time)  # an order is placed when its first line is
            known.cents_by_category[category] = known.cents_by_category.get(category, 0) + cents

    def finish(self) -> Iterator[ImportedOrder | SkippedRow]:
        """The grouped orders, once every row is read."""
        for order_id, order in self.orders.items():
            yield self._event(_digest(f"{self.file_name}:order:{order_id}"), order_id, order)

    def _event(self, key: str, order_id: str, order: _Order) -> ImportedOrder | SkippedRow:
        items = [
            {"product_id": "import", "category": category, "price": cents / 100, "quantity": 1}
            for category, cents in order.cents_by_category.items()
        ]
        event: Event = {
            "event_id": f"import-{key}",
            "type": "order_completed",
            "timestamp": _rfc3339(order.time),
            "customer_id": order.customer_id,
            "channel": self.defaults.channel,
            "properties": {
                "order_id": order_id,
                "revenue": sum(order.cents_by_category.values()) / 100,
                "currency": self.defaults.currency,
                "items": items,
            },
        }
        # the last word is the contract's: what it refuses is reported, never written
        result = validate(event, now=self.now)
        if isinstance(result, Rejection):
            return SkippedRow(order.line, result.detail.removeprefix(f"event import-{key}: "))
        return ImportedOrder(order.line, event)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _id(text: str, what: str) -> str:
    if not text:
        raise ValueError(f"{what} is empty")
    if len(text) > _MAX_ID:
        raise ValueError(f"{what} {text[:20]!r}... is longer than {_MAX_ID} characters")
    return text


def _parse_cents(text: str) -> int:
    """An amount in currency units as whole cents, refusing what is not a plain amount."""
    if not text:
        raise ValueError("amount is empty")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"amount {text[:40]!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"amount {text[:40]!r} is not a number")
    if amount < 0:
        raise ValueError(f"amount {text[:40]} is negative")
    cents = int((amount * 100).to_integral_value())
    if cents > _MAX_CENTS:
        raise ValueError(f"amount {text[:40]} is larger than 1e12")
    return cents


def _parse_time(text: str, time_format: str | None) -> datetime:
    """ISO 8601 (a date alone is midnight), YYYYMMDD, or ``time_format``; naive is UTC."""
    try:
        if time_format is not None:
            moment = datetime.strptime(text, time_format)
        elif len(text) == 8 and text.isdigit():
            moment = datetime.strptime(text, "%Y%m%d")
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        expected = f"--time-format {time_format!r}" if time_format else "ISO 8601 or YYYYMMDD"
        raise ValueError(f"time {text[:40]!r} does not match {expected}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _rfc3339(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
