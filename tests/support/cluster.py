"""The cluster as the tests see it: its address, its partitions, and ways to crash and revive
brokers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from localcluster import admin
from localcluster.cluster import LocalCluster


class KafkaCluster:
    """What tests need of the cluster: its address, and a way to crash and revive brokers."""

    def __init__(self, local: LocalCluster, bootstrap: str, managed: bool = True) -> None:
        self.local = local
        self.bootstrap = bootstrap
        self.managed = managed  # started by localcluster; False: KAFKA_BOOTSTRAP_SERVERS's
        self.admin = admin.admin_client(bootstrap)

    def kill(self, node_id: int) -> None:
        """SIGKILL one broker, as a crash or a pulled plug would."""
        self.local.kill(node_id)

    def start_missing(self) -> None:
        """Start every broker that is down and wait until the cluster is whole again."""
        self.local.up()
        # A fresh admin client: one that was talking to the cluster while all of it went down
        # may have been left knowing no broker, for good (librdkafka#5301, kafka_app/client_health).
        self.admin = admin.admin_client(self.bootstrap)

    @contextlib.contextmanager
    def broker_down(self, node_id: int) -> Iterator[None]:
        """SIGKILL a broker for the duration of the block, then bring it back."""
        self.kill(node_id)
        try:
            yield
        finally:
            self.start_missing()

    def partitions(self, topic: str, timeout: float = 10) -> list[admin.PartitionState]:
        """The topic's partitions. A new topic reaches the brokers' metadata one by one: one
        broker may answer "unknown topic" after another showed it with a full ISR (seen in
        a full test run), so that answer is retried for up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return admin.topic_partitions(self.admin, topic)
            except KafkaException as exc:
                unknown = exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
                if not unknown or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def leader_of(self, topic: str, partition: int) -> int | None:
        return next(p.leader for p in self.partitions(topic) if p.partition == partition)

    def wait_full_isr(self, topic: str, timeout: float = 60) -> list[admin.PartitionState]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                parts = self.partitions(topic, timeout=0)  # this loop retries, to its deadline
            except KafkaException as exc:
                # Right after CreateTopics, brokers may not know the topic yet; right after a
                # restart, the broker asked may not answer in time.
                transient = (
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                    KafkaError._TIMED_OUT,
                    KafkaError._TRANSPORT,
                )
                if exc.args[0].code() not in transient:
                    raise
                parts = []
            if parts and all(p.healthy for p in parts):
                return parts
            if time.monotonic() > deadline:
                raise AssertionError(f"ISR of {topic} not full after {timeout}s: {parts}")
            time.sleep(0.25)

    def create_topic(self, name: str, partitions: int = 3, replication_factor: int = 2) -> str:
        futures = self.admin.create_topics(
            [NewTopic(name, partitions, replication_factor)], request_timeout=15
        )
        futures[name].result(timeout=20)
        self.wait_full_isr(name, timeout=30)
        return name
