"""Shared fixtures: one real Kafka cluster for the whole test session, never a mock.

The cluster is the one docker-compose.yml describes, run by localcluster as local JVMs. With
KAFKA_BOOTSTRAP_SERVERS set, the tests use that cluster as it is and leave it running.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localcluster.cluster import LocalCluster
from support.cluster import KafkaCluster
from support.processes import App, Apps

# The fault tests this run leaves to `make chaos` (marker extended: CI's time), for the summary.
LEFT_TO_CHAOS: list[str] = []


def pytest_deselected(items: list[pytest.Item]) -> None:
    LEFT_TO_CHAOS.extend(item.nodeid for item in items if item.get_closest_marker("extended"))


def pytest_terminal_summary(terminalreporter) -> None:
    """What runs at full length elsewhere, so that a green run is not read as more than it is."""
    chaos = os.environ.get("CHAOS_DURATION", "180")
    terminalreporter.write_line(
        f"full length elsewhere: `make chaos` runs the {len(LEFT_TO_CHAOS)} fault tests left"
        f" out here (marker extended) and the chaos run for DURATION (default 10m; where this run"
        f" has test_chaos: CHAOS_DURATION={chaos}); `make soak` does not exist yet: no soak ran"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The live Compose stack publishes 9094-9096, the local cluster's ports too: its tests run
    first, and the stack is gone before the session's cluster starts (on first use)."""
    items.sort(key=lambda item: item.get_closest_marker("compose") is None)


@pytest.fixture(scope="session")
def kafka_cluster(request: pytest.FixtureRequest) -> Iterator[KafkaCluster]:
    local = LocalCluster(say=lambda message: print(f"localcluster: {message}", file=sys.stderr))
    if local.secure:  # remembered from `up --secure`: every plaintext test would be refused
        pytest.exit(
            f"{local.home} holds the secured cluster, and the tests need the plaintext one there:"
            " `python -m localcluster down --wipe` first (test_secure.py runs its own)",
            returncode=2,
        )
    reuse = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if reuse:
        yield KafkaCluster(local, reuse, managed=False)
        return
    already_running = all(node.alive() for node in local.nodes)
    local.up()
    yield KafkaCluster(local, local.bootstrap)
    if not already_running:  # a cluster a developer started stays up
        failed = request.session.testsfailed > 0
        local.down(wipe=not failed)
        if failed:
            local.say(f"tests failed: the brokers' logs are kept in {local.home}")


@pytest.fixture(scope="session")
def bootstrap_servers(kafka_cluster: KafkaCluster) -> str:
    return kafka_cluster.bootstrap


@pytest.fixture
def fresh_topic(kafka_cluster: KafkaCluster, request: pytest.FixtureRequest) -> str:
    """A new topic shaped like final-1-topic (3 partitions, RF 2), unique to this test."""
    slug = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return kafka_cluster.create_topic(f"test-{slug}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def scripts(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """Starts a script as a child process, ``scripts(script, name, *args, env=...)``, logging to
    <tmp_path>/<name>.log (an :class:`~support.processes.App`: on a timeout it shows the log and
    the stacks); kills any still running at the end."""
    with Apps(tmp_path) as started:
        yield started.launch
