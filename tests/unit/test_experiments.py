"""Experiments: assignment stability and balance, and the sequential test's error rates by
simulation with a look after every 100 customers per arm."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from cdpulse.experiments.assignment import unit, variant
from cdpulse.experiments.definitions import experiments
from cdpulse.experiments.report import report
from cdpulse.experiments.sequential import Arm, Comparison
from cdpulse.segments.definitions import DefinitionError, parse

ALPHA = 0.05
TAU = 0.05
SIMULATIONS = 1_000
LOOKS = range(100, 5_001, 100)  # 50 looks at the results, up to 5,000 customers per arm


def test_assignment_is_stable_across_processes() -> None:
    weights = (("control", 1.0), ("green", 1.0), ("blue", 2.0))
    here = [variant("button", f"C-{i}", weights) for i in range(50)]
    code = (
        "from cdpulse.experiments.assignment import variant;"
        "print(','.join(variant('button', f'C-{i}', "
        "(('control', 1.0), ('green', 1.0), ('blue', 2.0))) for i in range(50)))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert there.split(",") == here


def test_assignment_follows_the_weights_and_is_independent_across_experiments() -> None:
    weights = (("control", 1.0), ("green", 1.0), ("blue", 2.0))
    n = 40_000
    counts = Counter(variant("button", f"C-{i}", weights) for i in range(n))
    for name, share in (("control", 0.25), ("green", 0.25), ("blue", 0.5)):
        sd = math.sqrt(n * share * (1 - share))
        assert abs(counts[name] - n * share) < 4 * sd, (name, counts)
    # A customer's arm in one experiment says nothing about its arm in another.
    pairs = Counter(
        (unit("button", f"C-{i}") < 0.5, unit("pricing", f"C-{i}") < 0.5) for i in range(n)
    )
    for cell in pairs.values():
        assert abs(cell - n / 4) < 4 * math.sqrt(n * 0.25 * 0.75)


def _arms(rng: np.random.Generator, rate_a: float, rate_b: float) -> tuple[np.ndarray, ...]:
    """Cumulative conversions of both arms at every look, for every simulation."""
    top = LOOKS[-1]
    a = rng.random((SIMULATIONS, top)) < rate_a
    b = rng.random((SIMULATIONS, top)) < rate_b
    at = np.array(LOOKS) - 1
    return np.cumsum(a, axis=1)[:, at], np.cumsum(b, axis=1)[:, at]


def _rejected_at_some_look(conv_a: np.ndarray, conv_b: np.ndarray) -> np.ndarray:
    out = np.zeros(SIMULATIONS, dtype=bool)
    for s in range(SIMULATIONS):
        for j, n in enumerate(LOOKS):
            c = Comparison.of(Arm(n, int(conv_a[s, j])), Arm(n, int(conv_b[s, j])), ALPHA, TAU)
            if c.p_value <= ALPHA:
                out[s] = True
                break
    return out


def _naive_rejected_at_some_look(conv_a: np.ndarray, conv_b: np.ndarray) -> np.ndarray:
    """A fixed-sample two-proportion z-test read at every look: what people do wrong."""
    n = np.array(LOOKS, dtype=float)
    pa, pb = conv_a / n, conv_b / n
    pooled = (conv_a + conv_b) / (2 * n)
    se = np.sqrt(np.maximum(pooled * (1 - pooled) * 2 / n, 1e-12))
    return (np.abs(pb - pa) / se > 1.959964).any(axis=1)


def test_peeking_at_the_sequential_test_keeps_false_positives_under_alpha() -> None:
    conv_a, conv_b = _arms(np.random.default_rng(11), 0.1, 0.1)
    tolerance = 3 * math.sqrt(ALPHA * (1 - ALPHA) / SIMULATIONS)
    always_valid = _rejected_at_some_look(conv_a, conv_b).mean()
    assert always_valid <= ALPHA + tolerance, always_valid
    # The same data, read with a fixed-sample test at every look, is fooled well above
    # alpha: the simulation is sharp enough to see the inflation the test must avoid.
    naive = _naive_rejected_at_some_look(conv_a, conv_b).mean()
    assert naive > ALPHA + tolerance, naive


def test_the_sequential_test_finds_a_real_difference() -> None:
    conv_a, conv_b = _arms(np.random.default_rng(12), 0.10, 0.14)
    assert _rejected_at_some_look(conv_a, conv_b).mean() >= 0.8


def test_the_interval_covers_the_true_difference_at_every_look_at_once() -> None:
    conv_a, conv_b = _arms(np.random.default_rng(13), 0.10, 0.12)
    missed = 0
    for s in range(SIMULATIONS):
        for j, n in enumerate(LOOKS):
            c = Comparison.of(Arm(n, int(conv_a[s, j])), Arm(n, int(conv_b[s, j])), ALPHA, TAU)
            if not c.interval[0] <= 0.02 <= c.interval[1]:
                missed += 1
                break
    assert missed / SIMULATIONS <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / SIMULATIONS)


BOOK = """\
segments:
  - name: repeat_buyer
    when: orders >= 2
experiments:
  - name: checkout_button
    variants: {control: 1, green: 1}
    audience: repeat_buyer
    window_days: 7
"""


def test_experiments_are_read_from_the_segments_file() -> None:
    (experiment,) = experiments(parse(BOOK))
    assert experiment.control == "control" and experiment.audience == "repeat_buyer"
    assert experiment.window_ms == 7 * 86_400_000 and experiment.alpha == 0.05
    document = report(experiment, {"control": Arm(1000, 100), "green": Arm(1000, 160)})
    green = document["variants"][1]
    assert green["conversion_rate"] == 0.16 and green["versus_control"]["significant"]
    lo, hi = green["interval"]
    assert lo < 0.16 < hi


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("    audience: nobody\n", ":8: experiment 'checkout_button': no segment 'nobody'"),
        ("    alpha: 2\n", ":8: experiment 'checkout_button': alpha must be a number"),
        ("    colour: red\n", ":8: experiment 'checkout_button': unknown key 'colour'"),
    ],
)
def test_a_bad_experiment_names_the_line_and_the_reason(change: str, message: str) -> None:
    text = BOOK.replace("    audience: repeat_buyer\n", "") + change
    with pytest.raises(DefinitionError) as caught:
        experiments(parse(text))
    assert message in str(caught.value)


def test_variants_need_two_positive_weights() -> None:
    with pytest.raises(DefinitionError, match="two or more names"):
        experiments(parse(BOOK.replace("{control: 1, green: 1}", "{control: 1}")))
