"""A/B/n experiments: deterministic assignment, exposures and conversions, and an
always-valid sequential test for reading results every day."""

from cdpulse.experiments.assignment import variant
from cdpulse.experiments.definitions import Experiment, experiments
from cdpulse.experiments.report import report
from cdpulse.experiments.sequential import Arm, Comparison

__all__ = ["Arm", "Comparison", "Experiment", "experiments", "report", "variant"]
