"""Clients cut from brokers (support.nemesis, on the client's own uid), and the control that
shows the checker catches a consumer that commits before it processes."""

from __future__ import annotations

import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.checker import check
from support.figures import Figures
from support.nemesis import Nemesis
from support.processes import Apps, app_env
from support.protocols import PROTOCOLS
from support.records import TopicContent, read_records
from support.tail import Tail
from support.waits import wait_until

from .partition_state import leader_and_follower
from .workload import Workload

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]
CLIENT_UID = 64100  # the apps a test cuts from a broker run as this uid


def test_producer_cut_from_a_leader_past_its_delivery_timeout(
    kafka_cluster, fresh_topic: str, apps: Apps, tail: Tail, tmp_path, chaos: Nemesis, figures
) -> None:
    """Matrix row 7: the producer cannot reach partition 0's leader for 25 s, longer than its
    message.timeout.ms (set to 10 s here): those messages fail, each reported as an ERROR,
    none acknowledged, and every acknowledged one is in the topic."""
    properties = tmp_path / "short-timeout.properties"
    properties.write_text("message.timeout.ms=10000\n")
    leader, _ = leader_and_follower(kafka_cluster, fresh_topic)
    work = Workload(
        apps,
        fresh_topic,
        tmp_path,
        tail,
        producer_args=("--client-properties", properties),
        producer_uid=CLIENT_UID,
    )
    work.start()
    with chaos.window(25):
        chaos.cut_client(CLIENT_UID, leader)
    result, found = work.finish("jepsen-7-producer-cut-from-leader-25s", cut_from=leader)
    failed = work.senders[0].log().count("ERROR:root:Message delivery failed")
    result.extra["delivery_failures"] = failed
    figures.record(result)
    assert failed > 0, "no delivery failed: the cut did not outlast the delivery timeout"
    assert {kind: a.errors() for kind, a in found.items() if a.errors()} == {}


# Left to make chaos, under both protocols, for CI's time. CI's consumer faults: the crash and the
# rebalance (tests/faults/test_consumer_faults.py), the commit-first control, the chaos run's pause.
@pytest.mark.extended
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_consumers_cut_from_their_group_coordinator_past_the_session_timeout(
    protocol: str,
    kafka_cluster,
    fresh_topic: str,
    apps: Apps,
    tail: Tail,
    tmp_path,
    chaos: Nemesis,
    figures,
) -> None:
    """Matrix row 8: both replicas of a group cannot reach its coordinator for 50 s, past the
    45 s session: the group drops them, they find out when the cut heals, and rejoin."""
    work = Workload(
        apps,
        fresh_topic,
        tmp_path,
        tail,
        groups={"single": 2},
        consumer_args=("--group-protocol", protocol),
        consumer_uid=CLIENT_UID,
    )
    work.start()
    group = work.group_ids["single"]
    described = kafka_cluster.admin.describe_consumer_groups([group])[group].result(timeout=30)
    coordinator = described.coordinator.id
    with chaos.window(50):
        chaos.cut_client(CLIENT_UID, coordinator)
    result, found = work.finish(
        f"jepsen-8-consumers-cut-from-coordinator-50s-{protocol}", coordinator=coordinator
    )
    figures.record(result)
    assert {kind: a.errors() for kind, a in found.items() if a.errors()} == {}


def test_control_a_consumer_that_commits_before_processing_loses_records(
    kafka_cluster, fresh_topic: str, apps: Apps, tmp_path, figures
) -> None:
    """The control: killed three times, a consumer that commits before it processes leaves
    records never processed, and the checker names them lost. Our single consumer, killed the
    same way, loses none: what it had not committed comes again."""
    producer = apps.producer("producer", fresh_topic, "--count", 400)
    assert producer.wait(120) == 0
    acked = read_records(tmp_path / "producer.acked")
    env = app_env(kafka_cluster.bootstrap, fresh_topic)
    short_session = tmp_path / "short-session.properties"  # a killed member leaves in 6 s
    short_session.write_text("session.timeout.ms=6000\n")
    wanted = {r[2] for r in acked}

    def killed_three_times(kind: str):
        group, log = f"{kind}-{uuid.uuid4().hex[:8]}", tmp_path / f"{kind}.processed"

        def start():
            if kind == "single":
                fast = ("--client-properties", short_session, "--process-delay", 0.05)
                return apps.single_consumer(kind, fresh_topic, group, *fast)
            script = "tests/support/commit_first_consumer.py"
            return apps.launch(
                script, kind, kafka_cluster.bootstrap, fresh_topic, group, log, env=env
            )

        def processed() -> set[str]:
            return {r[2] for r in read_records(log)}

        for _ in range(3):
            app = start()
            before = len(read_records(log))
            wait_until(lambda b=before: len(read_records(log)) >= b + 40, 60, "progress", [app])
            app.signal(signal.SIGKILL)
            app.wait(30)
        app = start()
        wait_until(lambda: len(wanted - processed()) <= 3, 90, "the rest processed", [app])
        time.sleep(2)  # anything still to come comes now
        app.signal(signal.SIGKILL)
        return read_records(log)

    # The two consumers, each in a group of its own, side by side rather than one after the other.
    with ThreadPoolExecutor(2) as pool:
        runs = {kind: pool.submit(killed_three_times, kind) for kind in ("commit-first", "single")}
        logs = {kind: run.result() for kind, run in runs.items()}
    topic = TopicContent.read(kafka_cluster.bootstrap, fresh_topic)
    found = {
        kind: check(acked, {kind: records}, topic, explained={kind})
        for kind, records in logs.items()
    }
    figures.record(
        Figures(
            "jepsen-control-commit-before-processing",
            acked=len(acked),
            extra={kind.replace("-", "_"): a.line() for kind, a in found.items()},
        )
    )
    assert found["commit-first"].lost, "the checker found no loss in a consumer made to lose"
    assert found["single"].errors() == {}
