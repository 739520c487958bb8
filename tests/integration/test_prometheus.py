"""A real Prometheus scraping the real roles: every dashboard query and recording rule has data.

Debian's ``prometheus`` binary (.ci/run installs it) runs on a free port with
``deploy/prometheus/rules.yml`` loaded and scrapes a worker, a learner and an api of the
test's own. The test feeds them what every panel shows: a simulated shop (profiles,
batches, Redis round trips, triggers), a malformed message (a dead letter), labelled
examples of both classes on the training topic (model quality defined), and profile
reads on the api. Then each query of ``deploy/grafana/dashboards/cdpulse.json`` (Grafana's
``$__rate_interval`` substituted) and each recorded series must evaluate without error
and with a finite value, and every rule must be healthy.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cdpulse.models.churn.features import FEATURE_NAMES
from cdpulse.models.churn.labels import Example
from cdpulse.producer import Producer
from cdpulse.simulate.shop import Shop
from tests.integration.conftest import ROOT, Env, Roles, drained, free_port, wait_until

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "cdpulse.json"
# What Grafana puts in place of its interval variables; longer than the whole test.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1s"}


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, variables substituted."""
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    out = []
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            out.append((panel["title"], expr))
    return out


def recorded_series() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule["record"] for group in groups for rule in group["rules"] if "record" in rule]


class Prometheus:
    """A ``prometheus`` process with a config of its own, scraping the roles every second."""

    def __init__(self, workdir: Path, roles: Roles) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus not found: apt-get install -y prometheus (.ci/run does)"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        learner = roles.learning
        jobs = {"worker": roles.worker.port, "learner": learner.port, "api": roles.api.port}
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": f"cdpulse-{role}",
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                }
                for role, port in jobs.items()
            ],
        }
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.ready, 60, f"prometheus on port {self.port} to be ready")

    def ready(self) -> bool:
        assert self.process.poll() is None, f"prometheus exited:\n{self.log.read_text()[-3000:]}"
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def scraped(self, jobs: int) -> bool:
        """Whether every one of ``jobs`` targets was scraped, and up: what happens from
        now on is seen from its start (a rate needs a sample before the first increase)."""
        up = self.api("query", query="up")["result"]
        return len(up) == jobs and all(sample["value"][1] == "1" for sample in up)

    def api(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", f"{path} {params}: {answer}"
        return answer["data"]

    def finite(self, expr: str) -> bool:
        """Whether ``expr`` evaluates now to at least one finite sample (raises on errors)."""
        data = self.api("query", query=expr)
        values = [float(s["value"][1]) for s in data["result"]]
        return any(math.isfinite(v) for v in values)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def prometheus(env: Env, tmp_path: Path) -> Iterator[tuple[Prometheus, Roles]]:
    roles = env.roles(learner=True)
    server = Prometheus(tmp_path, roles)
    try:
        # Targets are picked up a few seconds after start (discovery updates are batched).
        wait_until(lambda: server.scraped(3), 60, "prometheus to scrape the three roles")
        yield server, roles
    finally:
        server.stop()


def test_every_dashboard_query_and_recording_rule_has_data(
    env: Env, prometheus: tuple[Prometheus, Roles]
) -> None:
    server, roles = prometheus
    worker, learner = roles.worker, roles.learning
    events = list(Shop(customers=150, days=5, seed=23).events())
    # Labelled examples of both classes: the model's quality becomes defined.
    width = len(FEATURE_NAMES)
    examples = [
        Example(f"P{i}", 0, 86_400_000, i % 2, [float(30 * (i % 2)), *[0.0] * (width - 1)])
        for i in range(200)
    ]
    with Producer.from_settings(env.settings) as producer:
        for event in events:
            producer.send(event)
        producer.send_raw(env.settings.topic_clickstream, b'{"type": "page_viewed"', b"x")
        for example in examples:
            producer.send_raw(env.settings.topic_training, example.to_json(), None)
    customers = sorted({e["customer_id"] for e in events if e.get("customer_id")})[:5]
    with httpx.Client(base_url=roles.api.url, timeout=10) as http:
        for customer in customers:
            http.get(f"/v1/profiles/{customer}")

    wait_until(lambda: drained(env.settings), 120, "the worker to drain its topics")
    wait_until(
        lambda: worker.metric("cdpulse_events_rejected_total") > 0,
        30,
        "the worker to dead-letter the malformed message",
    )
    wait_until(lambda: worker.metric("cdpulse_triggers_total") > 0, 60, "triggers decided")
    wait_until(
        lambda: learner.metric("cdpulse_model_quality_defined", {"metric": "roc_auc"}) == 1,
        60,
        "the learner to learn both classes",
    )

    queries = [*dashboard_queries(), *(("recording rule", name) for name in recorded_series())]
    missing: list[tuple[str, str]] = list(queries)

    def all_have_data() -> bool:
        missing[:] = [(title, expr) for title, expr in missing if not server.finite(expr)]
        return not missing

    try:
        wait_until(all_have_data, 60, "every dashboard query and recorded series to have data")
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}; without data: {missing}") from None
    groups = server.api("rules")["groups"]
    unhealthy = [
        (rule["name"], rule.get("lastError"))
        for group in groups
        for rule in group["rules"]
        if rule["health"] != "ok"
    ]
    assert {group["file"] for group in groups} == {str(RULES)}
    assert unhealthy == []
