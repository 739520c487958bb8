"""``cdpulse evaluate``: the in-process replays and their command line."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

from cdpulse.cli.main import main
from cdpulse.contract.partitions import partition_of
from cdpulse.importer import CsvFormat, ImportedOrder, OrderColumns, read_orders
from cdpulse.pipeline.replay import replay_clv
from cdpulse.settings import Settings
from cdpulse.simulate.shop import Shop


def cdnow_sample_lines() -> list[bytes]:
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.origin is not None, "make venv installs lifetimes' data"
    path = Path(spec.origin).parent / "datasets" / "CDNOW_sample.txt"
    rows = read_orders(path, OrderColumns("1", "3", "5"), CsvFormat("whitespace", header=False))
    return [json.dumps(r.event).encode() for r in rows if isinstance(r, ImportedOrder)]


def test_lifetime_value_predicts_cdnow_holdout_purchases_better_than_past_rates() -> None:
    # Fader, Hardie & Lee's split: 39 weeks of calibration, 39 weeks held out.
    result = asyncio.run(
        replay_clv(cdnow_sample_lines(), Settings(), partition_of, holdout_days=273)
    )
    assert result.customers == 2357
    assert result.model["mae"] < result.baseline["mae"]
    assert result.model["rmse"] < result.baseline["rmse"]
    assert result.model["actual"] == result.baseline["actual"] > 0


def test_evaluate_commands_print_model_and_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = tmp_path / "shop.jsonl"
    events = Shop(customers=60, days=40, seed=3).events()
    shop.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    assert main(["evaluate", "churn", "--input", str(shop)]) == 0
    out = capsys.readouterr().out
    assert "churn model" in out and "recency only" in out and "labelled snapshots" in out

    orders = tmp_path / "cdnow.jsonl"
    orders.write_bytes(b"\n".join(cdnow_sample_lines()))
    assert main(["evaluate", "clv", "--input", str(orders), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) == {"model", "baseline"} and figures["model"]["mae"] >= 0

    assert main(["evaluate", "reco", "--input", str(shop), "--json"]) == 0
    reco = json.loads(capsys.readouterr().out)
    assert reco["all"]["events"] > 0 and 0 <= reco["all"]["hit"] <= 1

    assert main(["evaluate", "clv", "--input", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
