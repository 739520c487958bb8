"""README stays true: its configuration table is the one the code prints."""

from __future__ import annotations

from pathlib import Path

from cdpulse.cli.settings_cmd import table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_matches_the_settings() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- settings-table -->\n") + len("<!-- settings-table -->\n")
    end = text.index("<!-- /settings-table -->")
    assert text[start:end].strip() == table(), "README's table is stale: paste `cdpulse settings`"
