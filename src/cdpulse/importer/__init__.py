"""Bring history in: turn exports from other systems into cdpulse events."""

from cdpulse.importer.csv_orders import (
    CsvFormat,
    ImportedOrder,
    OrderColumns,
    OrderDefaults,
    SkippedRow,
    UnknownColumn,
    UnreadableFile,
    read_orders,
)

__all__ = [
    "CsvFormat",
    "ImportedOrder",
    "OrderColumns",
    "OrderDefaults",
    "SkippedRow",
    "UnknownColumn",
    "UnreadableFile",
    "read_orders",
]
