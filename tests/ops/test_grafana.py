"""deploy/grafana: the compose files, the provisioning and the dashboard fit together.

No Docker engine here: the compose files are checked as YAML, every file they mount
must exist, and the dashboard must use the provisioned data source. Its queries are
evaluated on a real Prometheus by tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
COMPOSE_FILES = (GRAFANA / "docker-compose.yml", ROOT / "docker-compose.yml")
# What issue 12 asks the dashboard to show, each a word of some panel's title.
SHOWN = (
    "throughput",
    "lag per partition",
    "produce -> profile latency",
    "batch sizes",
    "redis time",
    "dead letters by reason",
    "save retries",
    "model quality",
    "drift",
    "learner lag",
    "trigger outcomes",
    "api latency by route",
)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_compose_files_mount_what_exists() -> None:
    for compose in COMPOSE_FILES:
        services = load(compose)["services"]
        assert {"prometheus", "grafana"} <= set(services), compose
        for name, service in services.items():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("."):
                    assert (compose.parent / source).exists(), f"{compose}: {name} mounts {source}"
        mounts = dict(v.split(":")[:2][::-1] for v in services["grafana"]["volumes"])
        assert (compose.parent / mounts["/var/lib/grafana/dashboards"]).resolve() == (
            GRAFANA / "dashboards"
        )
        loaded = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
        assert "/etc/prometheus/rules.yml" in loaded, f"{compose}: prometheus without rules.yml"


def test_the_dashboard_uses_the_provisioned_data_source_and_shows_what_is_asked() -> None:
    source = load(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    provider = load(GRAFANA / "provisioning" / "dashboards" / "cdpulse.yml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((GRAFANA / "dashboards" / "cdpulse.json").read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    titles = " | ".join(panel["title"].lower() for panel in panels)
    assert [what for what in SHOWN if what not in titles] == []
    assert len({panel["id"] for panel in panels}) == len(panels)
