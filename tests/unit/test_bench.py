"""The pure parts of ``cdpulse bench``: its arithmetic, its /proc and /metrics parsing,
its report and its chart. Nothing here measures time."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdpulse.bench.procstat import (
    CpuSnapshot,
    cores_used,
    listening_inode,
    parse_stat,
    parse_status_kib,
)
from cdpulse.bench.report import TARGETS, figures, render_markdown, verdict
from cdpulse.bench.sampler import Sample, summarize
from cdpulse.bench.stats import (
    crossing_time,
    histogram_delta,
    histogram_quantile,
    interpolate,
    percentile,
    percentiles,
    rates,
    window_rate,
)
from cdpulse.bench.workers import parse_metrics

INF = float("inf")

# --- percentiles ---------------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(values, 0.0) == 10.0
    assert percentile(values, 0.5) == 30.0
    assert percentile(values, 1.0) == 50.0
    assert percentile(values, 0.9) == pytest.approx(46.0)  # rank 3.6


def test_percentile_does_not_care_about_order() -> None:
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentiles([7.0]) == {"p50": 7.0, "p95": 7.0, "p99": 7.0}


def test_percentile_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        percentile([1.0], 1.5)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1), st.floats(0, 1), st.floats(0, 1))
def test_percentile_is_monotone_and_within_range(values: list[float], a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert min(values) <= percentile(values, low) <= percentile(values, high) <= max(values)


# --- histogram quantile --------------------------------------------------------------------


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    buckets = [(0.01, 10.0), (0.02, 30.0), (0.05, 40.0), (INF, 40.0)]
    # rank 20 of 40 lies halfway through the (0.01, 0.02] bucket, which holds 10..30
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.015)
    # rank 39.6: 9.6 of the 10 in (0.02, 0.05]
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.02 + 0.03 * 0.96)


def test_histogram_quantile_first_bucket_starts_at_zero() -> None:
    assert histogram_quantile(0.5, [(0.004, 4.0), (INF, 4.0)]) == pytest.approx(0.002)


def test_histogram_quantile_in_the_inf_bucket_answers_the_highest_bound() -> None:
    assert histogram_quantile(0.99, [(0.1, 50.0), (1.0, 90.0), (INF, 100.0)]) == 1.0


def test_histogram_quantile_skips_empty_buckets() -> None:
    buckets = [(0.001, 0.0), (0.002, 0.0), (0.005, 10.0), (INF, 10.0)]
    assert histogram_quantile(0.0, buckets) == pytest.approx(0.002)
    assert histogram_quantile(1.0, buckets) == pytest.approx(0.005)


def test_histogram_quantile_of_an_empty_histogram_is_nan() -> None:
    assert math.isnan(histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]))


def test_histogram_quantile_needs_the_inf_bucket() -> None:
    with pytest.raises(ValueError, match=r"\+Inf"):
        histogram_quantile(0.5, [(0.1, 1.0)])


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=12), st.floats(0, 1))
def test_histogram_quantile_stays_inside_the_bucket_holding_its_rank(
    counts: list[int], q: float
) -> None:
    bounds = [0.001 * 2**i for i in range(len(counts))]
    cumulative, running = [], 0.0
    for bound, n in zip(bounds, counts, strict=True):
        running += n
        cumulative.append((bound, running))
    buckets = [*cumulative, (INF, running)]
    value = histogram_quantile(q, buckets)
    if running == 0:
        assert math.isnan(value)
        return
    assert 0 <= value <= bounds[-1]
    rank = q * running
    holder = next(i for i, (_, c) in enumerate(cumulative) if c >= rank and c > 0)
    lower = bounds[holder - 1] if holder else 0.0
    assert lower - 1e-12 <= value <= bounds[holder] + 1e-12


def test_histogram_delta_subtracts_two_scrapes() -> None:
    before = [(0.01, 5.0), (0.1, 8.0), (INF, 9.0)]
    after = [(0.01, 15.0), (0.1, 28.0), (INF, 30.0)]
    assert histogram_delta(after, before) == [(0.01, 10.0), (0.1, 20.0), (INF, 21.0)]


def test_histogram_delta_refuses_different_bounds() -> None:
    with pytest.raises(ValueError, match="bucket bounds"):
        histogram_delta([(0.1, 1.0), (INF, 1.0)], [(0.2, 1.0), (INF, 1.0)])


# --- progress over time --------------------------------------------------------------------

PROGRESS = [(0.0, 0.0), (1.0, 0.0), (2.0, 100.0), (3.0, 300.0), (4.0, 500.0), (5.0, 500.0)]


def test_crossing_time_interpolates_between_samples() -> None:
    assert crossing_time(PROGRESS, 200.0) == pytest.approx(2.5)
    assert crossing_time(PROGRESS, 500.0) == pytest.approx(4.0)
    assert crossing_time(PROGRESS, 501.0) is None
    assert crossing_time(PROGRESS, 0.0) == 0.0


def test_window_rate_leaves_out_startup_and_tail() -> None:
    found = window_rate(PROGRESS, total=500, start=0.2, end=0.8)
    assert found is not None
    rate, t0, t1 = found
    # 100 at t=2.0, 400 at t=3.5: 300 messages in 1.5 s
    assert t0 == pytest.approx(2.0)
    assert t1 == pytest.approx(3.5)
    assert rate == pytest.approx(200.0)


def test_window_rate_is_none_before_progress_covers_the_window() -> None:
    assert window_rate([(0.0, 0.0), (1.0, 50.0)], total=100) is None


def test_interpolate_clamps_to_the_ends() -> None:
    series = [(1.0, 10.0), (3.0, 30.0)]
    assert interpolate(series, 0.0) == 10.0
    assert interpolate(series, 2.0) == 20.0
    assert interpolate(series, 9.0) == 30.0


def test_rates_is_the_slope_over_the_span() -> None:
    series = [(0.0, 0.0), (1.0, 100.0), (2.0, 300.0), (3.0, 600.0)]
    assert rates(series, span=1.0) == [(1.0, 100.0), (2.0, 200.0), (3.0, 300.0)]
    assert rates(series, span=2.0)[-1] == (3.0, 250.0)


# --- a phase summary -----------------------------------------------------------------------


def _sample(t: float, committed: int, cpu: float) -> Sample:
    return Sample(
        t=t,
        committed=committed,
        processed=[committed],
        batches=[committed // 100],
        cpu_seconds=[cpu],
        runqueue_seconds=[t * 0.05],
        redis_seconds=[t * 0.1],
        rss_bytes=[100 * 2**20],
        machine_busy=int(t * 150),
        machine_total=int(t * 200),
        redis_cpu_seconds=t * 0.01,
        kafka_cpu_seconds=None,
        bench_cpu_seconds=t * 0.02,
    )


def test_summarize_measures_costs_inside_the_window_only() -> None:
    # 2 s of startup burning CPU, then 1000 events/s at 0.8 CPU seconds per second
    samples = [_sample(0, 0, 0), _sample(2, 0, 3.0)]
    samples += [_sample(2 + i, 1000 * i, 3.0 + 0.8 * i) for i in range(1, 11)]
    summary = summarize(samples, 10_000, 0.1, 0.9)
    assert summary["events_per_second"] == pytest.approx(1000)
    assert summary["cpu_seconds_per_1000"] == [pytest.approx(0.8)]
    assert summary["worker_cpu_utilisation"] == [pytest.approx(0.8)]
    assert summary["worker_runqueue_share"] == [pytest.approx(0.05)]
    assert summary["worker_redis_share"] == [pytest.approx(0.1)]
    assert summary["machine_busy_share"] == pytest.approx(0.75)
    assert summary["mean_batch"] == pytest.approx(100)
    assert summary["wall_seconds"] == 12
    assert summary["first_commit_seconds"] == 3
    assert summary["kafka_cpu_seconds_per_1000"] is None
    cores = summary["cores"]
    assert cores["workers"] == pytest.approx(0.8)
    assert cores["redis"] == pytest.approx(0.01)
    assert cores["bench"] == pytest.approx(0.02)
    assert cores["others"] == pytest.approx(cores["machine"] - 0.83)


def test_summarize_without_enough_progress_reports_no_rate() -> None:
    summary = summarize([_sample(0, 0, 0), _sample(1, 5, 1)], 100, 0.1, 0.9)
    assert "events_per_second" not in summary
    assert summary["wall_seconds"] is None


# --- parsing /proc and /metrics ------------------------------------------------------------


def test_parse_stat_counts_fields_after_the_command_name() -> None:
    line = "4242 (cdpulse (worker) x) S 1 2 3 4 5 6 7 8 9 10 1234 567 0 0 20 0 9 0 1 2 3"
    assert parse_stat(line) == (1234, 567)


def test_parse_status_reads_kib_lines() -> None:
    text = "Name:\tpython3\nVmHWM:\t  250000 kB\nVmRSS:\t  200000 kB\n"
    assert parse_status_kib(text, "VmRSS") == 200000
    assert parse_status_kib(text, "VmHWM") == 250000
    with pytest.raises(ValueError, match="VmSwap"):
        parse_status_kib(text, "VmSwap")


def test_listening_inode_finds_the_listener_of_a_port() -> None:
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
        "   uid  timeout inode\n"
        "   0: 0100007F:9894 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
        "     0        0 111 1 0 100 0 0 10 0\n"
        "   1: 0100007F:9894 0100007F:C350 01 00000000:00000000 00:00000000 00000000"
        "     0        0 222 1 0 20 4 30 10 -1\n"
    )
    assert listening_inode(table, 0x9894) == "111"
    assert listening_inode(table, 9092) is None


def test_cores_used_splits_the_machine_between_named_processes_and_others() -> None:
    before = CpuSnapshot(10.0, 100.0, {"worker": 5.0, "kafka": 1.0})
    after = CpuSnapshot(12.0, 103.6, {"worker": 6.8, "kafka": 1.2, "redis": 0.1})
    cores = cores_used(before, after)
    assert cores["machine"] == pytest.approx(1.8)
    assert cores["worker"] == pytest.approx(0.9)
    assert cores["kafka"] == pytest.approx(0.1)
    assert "redis" not in cores  # not seen at the start: no figure rather than a wrong one
    assert cores["others"] == pytest.approx(0.8)


METRICS = """\
# HELP cdpulse_batch_size Messages per processed batch.
# TYPE cdpulse_batch_size histogram
cdpulse_batch_size_bucket{le="100.0"} 3.0
cdpulse_batch_size_bucket{le="500.0"} 10.0
cdpulse_batch_size_bucket{le="+Inf"} 10.0
cdpulse_batch_size_count 10.0
cdpulse_batch_size_sum 4000.0
# HELP cdpulse_redis_seconds Redis round trips, by operation.
# TYPE cdpulse_redis_seconds histogram
cdpulse_redis_seconds_bucket{le="0.001",op="load"} 4.0
cdpulse_redis_seconds_bucket{le="+Inf",op="load"} 5.0
cdpulse_redis_seconds_bucket{le="0.001",op="save"} 1.0
cdpulse_redis_seconds_bucket{le="+Inf",op="save"} 5.0
cdpulse_redis_seconds_count{op="load"} 5.0
cdpulse_redis_seconds_sum{op="load"} 0.004
cdpulse_redis_seconds_count{op="save"} 5.0
cdpulse_redis_seconds_sum{op="save"} 0.006
"""


def test_parse_metrics_sums_labels_and_collects_buckets() -> None:
    scrape = parse_metrics(METRICS)
    assert scrape.value("cdpulse_batch_size_sum") == 4000.0
    assert scrape.value("cdpulse_redis_seconds_sum") == pytest.approx(0.010)
    assert scrape.value("cdpulse_missing_total") == 0.0
    assert scrape.buckets["cdpulse_batch_size"] == [(100.0, 3.0), (500.0, 10.0), (INF, 10.0)]
    assert scrape.buckets["cdpulse_redis_seconds"] == [(0.001, 5.0), (INF, 10.0)]


# --- report and chart ----------------------------------------------------------------------


def _result() -> dict[str, Any]:
    timeline = [
        _sample(t, min(int(t * 1000), 8000), t * 0.9).as_dict() for t in (0, 1, 2, 4, 6, 8, 9)
    ]
    return {
        "started_at": "2026-11-26T20:00:00+00:00",
        "machine": {"cpu_model": "Test CPU", "cores": 2},
        "load_average": {"start": [0.1, 0.2, 0.3]},
        "throughput": [
            {
                "workers": 1,
                "events_per_second": 8000.0,
                "events_per_second_per_worker": 8000.0,
                "cpu_seconds_per_1000": [0.11],
                "worker_cpu_utilisation": [0.95],
                "peak_rss_bytes": [150 * 2**20],
                "mean_batch": 480.0,
                "timeline": timeline,
                "cores": {"machine": 1.9, "workers": 0.95, "kafka": 0.1, "others": 0.85},
            },
            {
                "workers": 2,
                "events_per_second": 12000.0,
                "events_per_second_per_worker": 6000.0,
                "cpu_seconds_per_1000": [0.12, 0.12],
                "timeline": timeline,
            },
        ],
        "scaling": {"one": 8000.0, "two": 12000.0, "ratio": 1.5},
        "ceiling": {"events_per_second": 150000.0},
        "latency": {
            "rate": 5000,
            "achieved_rate": 4990.0,
            "p50": 0.055,
            "p95": 0.09,
            "p99": 0.1,
            "kept_up": True,
            "mean_batch": 499.0,
            "timeline": [{"t": 1.0, "count": 5000, "p50": 0.05, "p95": 0.09, "p99": 0.1}],
        },
        "http": {
            "rate": 500,
            "achieved_rate": 499.0,
            "statuses": {"200": 10000},
            "latency": {"p50": 0.0012, "p95": 0.0025, "p99": 0.004, "max": 0.02},
        },
        "http_recommendations": {
            "rate": 500,
            "achieved_rate": 498.0,
            "statuses": {"200": 10000},
            "latency": {"p50": 0.002, "p95": 0.004, "p99": 0.007, "max": 0.03},
        },
        "redis": {
            "profiles": 10000,
            "aliases": 1500,
            "bytes_per_profile": 2500.0,
            "memory_usage": {"mean": 2100.0, "p99": 3900.0},
            "msgpack_bytes": {"mean": 1700.0},
        },
        "stages": {
            "events_per_second": 20000.0,
            "stages_seconds": {"decode": 1.0, "load": 0.5},
            "per_event_us": {"decode": 10.0, "load": 5.0},
            "per_event_cpu_us": {"decode": 9.5, "load": 2.0},
        },
    }


def test_verdict_says_met_or_by_how_much_it_missed() -> None:
    assert verdict(25_000, TARGETS["throughput"]) == "met"
    assert verdict(5_000, TARGETS["throughput"]) == "missed: 0.25x the target"
    assert verdict(0.1, TARGETS["latency_p99"]) == "missed: 2.00x the target"
    assert verdict(0.05, TARGETS["latency_p99"]) == "missed: 1.00x the target"  # not below
    assert verdict(None, TARGETS["scaling"]) == "not measured"
    assert verdict(math.nan, TARGETS["http_p99"]) == "not measured"


def test_figures_pick_the_five_target_figures() -> None:
    assert figures(_result()) == {
        "throughput": 8000.0,
        "latency_p99": 0.1,
        "http_p99": 0.004,
        "reco_http_p99": 0.007,
        "redis_bytes": 2500.0,
        "scaling": 1.5,
    }


def test_render_markdown_shows_figures_against_targets() -> None:
    text = render_markdown(_result())
    lines = text.splitlines()
    assert lines[0] == "| measure | result | target | verdict |"
    assert (
        "| sustained events/s per worker process | 8,000 events/s | ≥ 20,000 events/s "
        "| missed: 0.40x the target |" in lines
    )
    assert "| GET /v1/profiles/{id} p99 at 500 requests/s | 4.0 ms | < 5.0 ms | met |" in lines
    assert (
        "| GET /v1/profiles/{id}/recommendations p99 at 500 requests/s | 7.0 ms | < 5.0 ms "
        "| missed: 1.40x the target |" in lines
    )
    assert (
        "| two workers on two partitions / one | 1.50x | ≥ 1.60x | missed: 0.94x the target |"
        in lines
    )
    assert "| 1 worker(s): share of the bare-consumer ceiling | 5.3% |" in lines
    assert "| µs per event: load | 5.0 wall, 2.0 CPU |" in lines
    assert (
        "| 1 worker(s): cores busy | machine 1.90: workers 0.95, kafka 0.10, others 0.85 |" in lines
    )


def test_render_markdown_of_a_partial_result_marks_what_is_missing() -> None:
    text = render_markdown({"throughput": [], "machine": {}})
    assert text.count("not measured") == 6


def test_chart_draws_a_png_from_the_json_alone(tmp_path: Path) -> None:
    from cdpulse.bench.chart import draw

    out = tmp_path / "chart.png"
    draw(_result(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
