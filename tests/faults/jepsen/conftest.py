"""The Jepsen-class tests' own cluster: like the session's, but each node runs as a uid of its
own, so that support.nemesis can cut the links between them, and keeps its log dir on a small
tmpfs of its own, so that support.disks can fill it. It needs root, nft and setpriv: elsewhere
these tests skip with one line; in CI (CI=true) they fail instead."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster.cluster import DEFAULT_HOME, LocalCluster
from localcluster.state import read as read_state
from support import disks, nemesis
from support.cluster import KafkaCluster
from support.nemesis import Nemesis

NODE_UID_BASE = 64000  # node n runs as uid 64000 + n
PORT_SHIFT = 700  # its client ports: the session cluster's + 700


def session_offset() -> int:
    """The port offset the session's cluster uses."""
    if os.environ.get("LOCALCLUSTER_PORT_OFFSET"):
        return int(os.environ["LOCALCLUSTER_PORT_OFFSET"])
    home = Path(os.environ.get("LOCALCLUSTER_HOME") or DEFAULT_HOME)
    return int(read_state(home).get("port_offset", 0))


@pytest.fixture(scope="package")
def kafka_cluster(request: pytest.FixtureRequest) -> Iterator[KafkaCluster]:
    if why := nemesis.available():
        if os.environ.get("CI"):
            pytest.fail(f"the Jepsen-class tests must run in CI, but the nemesis {why}")
        pytest.skip(f"Jepsen-class fault tests: the nemesis {why}")
    # Its nodes, each its own uid, check the path to their folders with access(2), which
    # ignores their capabilities: pytest's base folder is root's alone, /tmp is open to all.
    home = Path(tempfile.mkdtemp(prefix="jepsen-cluster-"))
    home.chmod(0o755)
    own = {
        "LOCALCLUSTER_HOME": str(home),
        "LOCALCLUSTER_PORT_OFFSET": str(session_offset() + PORT_SHIFT),
        "LOCALCLUSTER_NODE_UID_BASE": str(NODE_UID_BASE),
    }
    with pytest.MonkeyPatch.context() as env:  # LocalCluster reads them when it is made
        for key, value in own.items():
            env.setenv(key, value)
        local = LocalCluster(say=lambda m: print(f"jepsen cluster: {m}", file=sys.stderr))
    try:
        for node in local.nodes:
            disks.mount(node.data_dir)
        local.up()
        yield KafkaCluster(local, local.bootstrap)
    finally:
        Nemesis(local).heal()
        for node in local.nodes:
            node.signal(signal.SIGCONT)
        try:
            local.down()
        finally:
            for node in local.nodes:
                disks.unmount(node.data_dir)
        if request.session.testsfailed == 0:  # failed: its logs are kept
            shutil.rmtree(home)


@pytest.fixture(scope="package")
def bootstrap_servers(kafka_cluster: KafkaCluster) -> str:
    return kafka_cluster.bootstrap


@pytest.fixture
def chaos(kafka_cluster: KafkaCluster) -> Iterator[Nemesis]:
    """The nemesis. Whatever a test leaves, after it no rule is left, no disk full and no node
    stopped."""
    nemesis = Nemesis(kafka_cluster.local)
    nemesis.heal()
    yield nemesis
    nemesis.heal()
    for node in kafka_cluster.local.nodes:
        disks.free(node.data_dir)
        node.signal(signal.SIGCONT)
