"""python -m localcluster ui: kaskade's admin view (topics, partitions, consumer groups,
members and lag) of the cluster the scripts use, in the terminal, without Docker.

The bootstrap servers are the scripts' own: KAFKA_BOOTSTRAP_SERVERS when set, else the local
cluster's (its remembered port offset included), as `python -m localcluster env` prints them.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

from localcluster import admin
from localcluster.cluster import LocalCluster
from localcluster.errors import ClusterError

# kaskade's default is 30 s: watching `make demo`, a message every 1.5 s per producer, lag
# would look frozen. 5 s is kaskade's shortest.
REFRESH_SECONDS = 5


def bootstrap_servers(cluster: LocalCluster) -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or cluster.bootstrap


def kaskade_command(bootstrap: str) -> list[str]:
    # Its console script, beside this interpreter in the venv: the venv need not be active.
    beside = Path(sys.executable).with_name("kaskade")
    program = str(beside) if beside.is_file() else shutil.which("kaskade")
    if program is None:
        raise ClusterError("kaskade is not installed: `make ui` installs requirements-ui.txt")
    return [program, "admin", "-b", bootstrap, "--refresh-interval", str(REFRESH_SECONDS)]


def run_ui(cluster: LocalCluster) -> NoReturn:
    """Replaces this process with kaskade, once a broker answers: with none, kaskade shows an
    empty table marked "Not Updated", and no error, for as long as it runs."""
    if cluster.secure:  # kaskade takes its settings on the command line, which `ps` shows
        raise ClusterError("`make ui` does not log in to the secured cluster: use Kafka UI")
    bootstrap = bootstrap_servers(cluster)
    try:
        admin.registered_brokers(admin.admin_client(bootstrap))
    except Exception:
        raise ClusterError(
            f"no Kafka broker answers at {bootstrap}: run `make up` or `make demo` first"
        ) from None
    command = kaskade_command(bootstrap)
    os.execv(command[0], command)
