"""deploy/k8s: the example overlay, rendered as a cluster would receive it, names real
settings, real roles and the right ports, and scales workers no further than partitions.

Rendered by ``kustomize build`` (``.ci/run`` installs it with ``go install``) or, where
that is missing, ``kubectl kustomize``; without either these tests fail, never skip.
No cluster is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdpulse.cli.worker_cmd import ROLES
from cdpulse.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "example"
PORT_SETTING = {
    "worker": "CDPULSE_WORKER_PORT",
    "learner": "CDPULSE_LEARNER_PORT",
    "api": "CDPULSE_WEB_PORT",
}


def render_command() -> list[str]:
    gobin = Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin" / "kustomize"
    kustomize = shutil.which("kustomize") or (str(gobin) if gobin.is_file() else None)
    if kustomize:
        return [kustomize, "build"]
    kubectl = shutil.which("kubectl")
    assert kubectl, (
        "kustomize not found: go install sigs.k8s.io/kustomize/kustomize/v5@v5.4.3 "
        "(.ci/run does), or install kubectl"
    )
    return [kubectl, "kustomize"]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    done = subprocess.run(
        [*render_command(), str(OVERLAY)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def config(docs: list[dict[str, Any]]) -> dict[str, str]:
    (config_map,) = of_kind(docs, "ConfigMap")
    return dict(config_map["data"])


def deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in of_kind(docs, "Deployment")
    }


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_every_setting_named_is_a_setting(rendered: list[dict[str, Any]]) -> None:
    fields = {f"CDPULSE_{name.upper()}" for name in Settings.model_fields}
    (secret,) = of_kind(rendered, "Secret")
    named = set(config(rendered)) | set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for deployment in of_kind(rendered, "Deployment"):
        named |= {e["name"] for e in container(deployment).get("env", [])}
    assert named, "no settings rendered"
    assert named <= fields, f"not settings: {sorted(named - fields)}"


def test_the_config_map_is_valid_production_settings(rendered: list[dict[str, Any]]) -> None:
    values = config(rendered)
    settings = Settings(**{k.removeprefix("CDPULSE_").lower(): v for k, v in values.items()})
    assert settings.web_host == "0.0.0.0", "the probes and the Service reach the pod's address"
    assert (settings.topic_replication, settings.topic_min_insync_replicas) == (3, 2)


def test_each_role_runs_its_command_with_config_and_secrets(rendered: list[dict[str, Any]]) -> None:
    roles = deployments(rendered)
    assert set(roles) == set(ROLES)
    (config_map,) = of_kind(rendered, "ConfigMap")
    (secret,) = of_kind(rendered, "Secret")
    for role, deployment in roles.items():
        spec = container(deployment)
        assert spec["command"] == ["cdpulse", role]
        sources = spec["envFrom"]
        assert {"configMapRef": {"name": config_map["metadata"]["name"]}} in sources
        assert {"secretRef": {"name": secret["metadata"]["name"]}} in sources
        assert spec["image"] == "registry.example.com/cdpulse:0.1.0"
        assert {"requests", "limits"} <= set(spec["resources"]), role


def test_probes_ask_each_role_on_its_port_setting(rendered: list[dict[str, Any]]) -> None:
    values = config(rendered)
    for role, deployment in deployments(rendered).items():
        spec = container(deployment)
        ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
        expected = int(values[PORT_SETTING[role]])
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = spec[probe]["httpGet"]
            assert get["path"] == path, (role, probe)
            port = ports.get(get["port"], get["port"])
            assert port == expected, (role, probe, port, PORT_SETTING[role])


def test_the_api_service_reaches_the_api_port(rendered: list[dict[str, Any]]) -> None:
    (service,) = of_kind(rendered, "Service")
    api = container(deployments(rendered)["api"])
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    (port,) = service["spec"]["ports"]
    assert ports[port["targetPort"]] == int(config(rendered)["CDPULSE_WEB_PORT"])
    assert service["spec"]["selector"].items() <= api_labels(rendered).items()


def api_labels(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(deployments(docs)["api"]["spec"]["template"]["metadata"]["labels"])


def test_workers_have_a_disruption_budget(rendered: list[dict[str, Any]]) -> None:
    (budget,) = of_kind(rendered, "PodDisruptionBudget")
    labels = deployments(rendered)["worker"]["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_workers_scale_on_their_group_lag_within_the_partitions(
    rendered: list[dict[str, Any]],
) -> None:
    values = config(rendered)
    (scaled,) = of_kind(rendered, "ScaledObject")
    assert (
        scaled["spec"]["scaleTargetRef"]["name"]
        == deployments(rendered)["worker"]["metadata"]["name"]
    )
    assert scaled["spec"]["maxReplicaCount"] <= int(values["CDPULSE_TOPIC_PARTITIONS"])
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["bootstrapServers"] == values["CDPULSE_KAFKA_BOOTSTRAP"]
    # The worker's consumer group is the app id (app/base.py).
    assert trigger["metadata"]["consumerGroup"] == values["CDPULSE_APP_ID"]
