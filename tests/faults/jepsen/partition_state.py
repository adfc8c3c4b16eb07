"""What the Jepsen-class tests ask of a partition while they hurt the cluster: its leader and
follower, its ISR, and how many acknowledgements the producers logged for it in a span."""

from __future__ import annotations

import re
import subprocess

from support.kafka_tools import java_tool
from support.tail import Tail

# Only the replication link: both brokers still reach the controller quorum (on CONTROLLER).
REPLICATION = ("INTERNAL",)


def leader_and_follower(kafka_cluster, topic: str, partition: int = 0) -> tuple[int, int]:
    state = next(p for p in kafka_cluster.partitions(topic) if p.partition == partition)
    follower = next(r for r in state.replicas if r != state.leader)
    return state.leader, follower


def isr(kafka_cluster, topic: str, partition: int = 0) -> list[int]:
    return next(p.isr for p in kafka_cluster.partitions(topic) if p.partition == partition)


def described(kafka_cluster, topic: str) -> tuple[str, list[int]] | None:
    """Partition 0's leader ("none" or "-1" if it has none) and ISR, as Kafka's own
    kafka-topics.sh --describe says; None if it did not answer within 60 s. For the moments
    after a broker died: librdkafka's admin client then kept timing out for a minute
    ("Failed while waiting for controller") where this answers."""
    command = java_tool(
        "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server", kafka_cluster.bootstrap, "--describe", "--topic", topic, brief=True,
    )  # fmt: skip
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    except subprocess.TimeoutExpired:
        return None
    found = re.search(r"\tPartition: 0\tLeader: (-?\d+|none)\t.*\tIsr: ([\d,]*)", out)
    if found is None:
        return None
    return found.group(1), [int(n) for n in found.group(2).split(",") if n]


def leader_is(kafka_cluster, topic: str, wanted: int | None) -> bool:
    """Whether partition 0's leader is ``wanted`` (None: no leader), as described() says."""
    state = described(kafka_cluster, topic)
    expected = ("none", "-1") if wanted is None else (str(wanted),)
    return state is not None and state[0] in expected


def acked_in(tail: Tail, partition: int, start: float, end: float) -> int:
    """Acknowledgements of ``partition`` the producers logged between ``start`` and ``end``."""
    return sum(f.counted([str(partition)], start, end) for f in tail.files)
