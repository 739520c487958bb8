"""A Redis Cluster of the tests' own: three masters and three replicas of Debian's
redis-server, started by ``deploy/local/redis-cluster.sh`` (what ``make cluster`` runs),
in the session's run directory, on ports from ``CDPULSE_TEST_REDIS_CLUSTER_PORT`` (16401:
16401-16406, cluster bus 26401-26406: away from the script's default 7001-7006 and its
bus ports)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.chaos.services import PrivateService, sigkill
from tests.integration.conftest import RUN_DIR, wait_until

FIRST_PORT = int(os.environ.get("CDPULSE_TEST_REDIS_CLUSTER_PORT", "16401"))


@dataclass(frozen=True, order=True)
class SlotRange:
    """Slots ``start``-``end`` and the ports of their master and its replica (0: none)."""

    start: int
    end: int
    primary: int
    replica: int


class RedisClusterNodes(PrivateService):
    """The cluster's nodes: start, stop, and the faults the tests make (a node killed)."""

    script = "redis-cluster.sh"

    def __init__(self, run_dir: Path = RUN_DIR, first_port: int = FIRST_PORT) -> None:
        super().__init__(run_dir)
        self.first_port = first_port
        self.ports = {"CDPULSE_REDIS_CLUSTER_PORT": first_port}

    @property
    def url(self) -> str:
        return self._run("url").strip()

    @property
    def node_ports(self) -> list[int]:
        return [int(p) for p in self._run("ports").split()]

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port)

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key``'s slot now."""
        client = redis.RedisCluster(host="127.0.0.1", port=self.first_port)
        try:
            return int(client.get_node_from_key(key).port)
        finally:
            client.close()

    def pid_of(self, port: int) -> int:
        return int((self.run_dir / "redis-cluster" / str(port) / "redis.pid").read_text().strip())

    def kill_node(self, port: int) -> None:
        """SIGKILL the node on ``port`` and wait until its process is gone."""
        sigkill(self.pid_of(port))

    def node_id(self, port: int) -> str:
        return str(self.node(port).execute_command("CLUSTER", "MYID").decode())

    def slots(self) -> list[SlotRange]:
        """Who serves which slots now, in slot order (as a live node says)."""
        for port in self.node_ports:
            try:
                ranges = self.node(port).execute_command("CLUSTER SLOTS")
            except redis.ConnectionError:
                continue  # a killed node
            # [start, end, [host, port, id, …] of the master, then one per replica]
            return sorted(
                SlotRange(int(r[0]), int(r[1]), int(r[2][1]), int(r[3][1]) if len(r) > 3 else 0)
                for r in ranges
            )
        raise AssertionError("no node of the redis cluster answers")

    def reshard(self, source: int, target: int, slots: int) -> None:
        """Move the first ``slots`` slots of the master on ``source`` to the master on
        ``target`` (``redis-cli --cluster reshard``: key by key with MIGRATE, while
        clients write), and return once it is done.

        redis-cli refuses to start while the nodes do not agree on the configuration,
        which they do not for a while after a failover (the old master rejoining as a
        replica): it waits for ``redis-cli --cluster check`` to pass first."""
        wait_until(lambda: self._check(source) == "", 120, "the redis cluster nodes to agree")
        done = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "reshard",
                f"127.0.0.1:{source}",
                "--cluster-from",
                self.node_id(source),
                "--cluster-to",
                self.node_id(target),
                "--cluster-slots",
                str(slots),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=600,
        )
        if done.returncode != 0:
            said = (done.stdout + done.stderr).strip().splitlines()[-15:]
            raise AssertionError(
                f"redis-cli --cluster reshard exited {done.returncode}:\n" + "\n".join(said)
            )

    def _check(self, port: int) -> str:
        """What ``redis-cli --cluster check`` finds wrong from ``port`` ("" when all is well)."""
        done = subprocess.run(
            ["redis-cli", "--cluster", "check", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        if done.returncode == 0:
            return ""
        return "\n".join(
            line for line in done.stdout.splitlines() if "[ERR]" in line or "[WARNING]" in line
        )

    def owned(self, port: int) -> list[int]:
        """The slots the master on ``port`` serves, in order."""
        return [s for r in self.slots() if r.primary == port for s in range(r.start, r.end + 1)]

    def keys_in_slot(self, port: int, slot: int) -> int:
        return int(self.node(port).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))

    def role(self, port: int) -> str:
        """``master`` or ``slave`` as the node says (raises if it does not answer)."""
        return str(self.node(port).info("replication")["role"])

    def wait_replicated(self, timeout: float = 120) -> None:
        """Until every master has a replica whose link to it is up: right after start
        (or a failover), CLUSTER SLOTS lists a slot range without its replica until the
        replica has connected and synced, longer on a loaded machine."""

        def replicated() -> bool:
            for r in self.slots():
                if r.replica == 0:
                    return False
                try:
                    if self.node(r.replica).info("replication").get("master_link_status") != "up":
                        return False
                except redis.ConnectionError:
                    return False
            return True

        wait_until(replicated, timeout, "every redis cluster master to have a replica in step")

    def wait_serving(self, timeout: float = 60) -> None:
        """Until every live node says every slot is served."""

        def serving() -> bool:
            for port in self.node_ports:
                try:
                    if self.node(port).cluster("info")["cluster_state"] != "ok":
                        return False
                except redis.ConnectionError:
                    continue  # a killed node
            return True

        wait_until(serving, timeout, "the redis cluster to serve every slot")
