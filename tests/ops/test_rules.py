"""deploy/prometheus/rules.yml: valid for Prometheus, every alert unit-tested by promtool.

promtool is Debian's ``prometheus`` package (.ci/run installs it); without it these
tests fail, never skip: CI must install it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules.yml"
RULE_TESTS = PROMETHEUS / "rules.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool not found: apt-get install -y prometheus (.ci/run does)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def test_the_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_prometheus_configs_load_the_rules() -> None:
    for config in ("prometheus.yml", "prometheus-compose.yml"):
        done = promtool("check", "config", str(PROMETHEUS / config))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "rules.yml" in yaml.safe_load((PROMETHEUS / config).read_text())["rule_files"]


def test_every_alert_has_a_summary_and_a_runbook_line() -> None:
    for alert in alerts():
        notes = alert.get("annotations", {})
        assert notes.get("summary"), f"{alert['alert']}: no summary annotation"
        runbook = notes.get("runbook", "")
        assert runbook and "\n" not in runbook, f"{alert['alert']}: no one-line runbook"


def test_every_alert_is_tested_firing_and_silent() -> None:
    """Each alert has a promtool case where it fires and one where it must not."""
    cases = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert names - fired == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown silent"
