"""`make demo`'s metrics ports. In Compose every app container serves /metrics, /healthz and
/readyz (kafka_app/probes) on the same METRICS_PORT, each on its own address; local replicas
share one host, so each gets a port of its own, on loopback only: the compose file's port plus
the replica's number among all that serve one, shifted by LOCALCLUSTER_PORT_OFFSET as the
brokers' ports are (9101-9106 for 9100 and six replicas; 9701-9706 with offset 600)."""

from __future__ import annotations

from localcluster.cluster import DEFAULT_HOME, LocalCluster
from localcluster.compose import AppService
from localcluster.nodes import LOOPBACK
from localcluster.portcheck import require_free


def plan(apps: list[AppService], offset: int) -> dict[str, int]:
    """Replica name (producer-1) -> its metrics port, for services that set a fixed
    METRICS_PORT (0, "any free port", is left to the app, as is an unset one)."""
    ports: dict[str, int] = {}
    for app in apps:
        base = app.environment.get("METRICS_PORT", "")
        if not base.isdigit() or int(base) == 0:
            continue
        for number in range(1, app.replicas + 1):
            ports[f"{app.service}-{number}"] = int(base) + len(ports) + 1 + offset
    return ports


def environment(ports: dict[str, int], replica: str) -> dict[str, str]:
    """What replica `replica` gets instead of the compose file's METRICS_PORT."""
    if replica not in ports:
        return {}
    return {"METRICS_PORT": str(ports[replica]), "METRICS_ADDRESS": LOOPBACK}


def check_free(cluster: LocalCluster, ports: dict[str, int]) -> None:
    """Before anything starts: a busy metrics port would make its replica exit 2, again and
    again under `restart:`. The way out offered is an offset whose broker and metrics ports
    are all free."""
    external = [int(address.rpartition(":")[2]) for address in cluster.bootstrap.split(",")]
    wanted = {port: f"{replica}'s metrics" for replica, port in ports.items()}
    require_free(wanted, external + list(wanted), cluster.port_offset, cluster.home, DEFAULT_HOME)


def lines(ports: dict[str, int]) -> list[str]:
    """One line per replica, for the demo to print once at start."""
    if not ports:
        return []
    width = max(len(replica) for replica in ports)
    return ["metrics and probes of each replica (on this machine only):"] + [
        f"  {replica:<{width}}  http://{LOOPBACK}:{port}/metrics  (/healthz, /readyz)"
        for replica, port in ports.items()
    ]
