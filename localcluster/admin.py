"""What localcluster asks the running cluster, through confluent-kafka's AdminClient."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec, ResourceType

from localcluster.compose import TopicSpec
from localcluster.errors import ClusterError

# librdkafka logs every refused connection while brokers start; those are expected here.
_quiet = logging.getLogger("localcluster.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def admin_client(bootstrap: str, security: dict[str, str] | None = None) -> AdminClient:
    """``security``: the admin's login to a secured cluster (LocalCluster.security)."""
    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "logger": _quiet,
            "error_cb": lambda _err: None,
            "socket.connection.setup.timeout.ms": 3000,
            "reconnect.backoff.max.ms": 500,
            **(security or {}),
        }
    )


def create_acls(admin: AdminClient, bindings: list, timeout: float = 10) -> None:
    """Grant ``bindings`` (granting one again changes nothing)."""
    for future in admin.create_acls(bindings, request_timeout=timeout).values():
        future.result(timeout=timeout + 1)


@dataclass
class PartitionState:
    partition: int
    leader: int | None
    replicas: list[int]
    isr: list[int]
    end_offset: int | None = None

    @property
    def healthy(self) -> bool:
        """Has a leader and every replica in sync."""
        return self.leader is not None and len(self.isr) == len(self.replicas)


def registered_brokers(admin: AdminClient, timeout: float = 5) -> list[int]:
    cluster = admin.describe_cluster(request_timeout=timeout).result(timeout=timeout + 1)
    return sorted(node.id for node in cluster.nodes)


def ensure_topics(admin: AdminClient, specs: list[TopicSpec], timeout: float = 10) -> list[str]:
    """Creates each topic, with its configs, unless it exists (like ``kafka-topics --create
    --if-not-exists --config ...``). Returns the names of those created now."""
    new = [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in specs]
    created = []
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout + 1)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        else:
            created.append(name)
    return created


def topic_partitions(admin: AdminClient, topic: str, timeout: float = 5) -> list[PartitionState]:
    description = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic]
    result = description.result(timeout=timeout + 1)
    return sorted(
        (
            PartitionState(
                partition=p.id,
                leader=p.leader.id if p.leader is not None else None,
                replicas=[r.id for r in p.replicas],
                isr=[r.id for r in p.isr],
            )
            for p in result.partitions
        ),
        key=lambda p: p.partition,
    )


def end_offsets(admin: AdminClient, topic: str, partitions: list[int], timeout: float = 5):
    return _offsets(admin, topic, partitions, OffsetSpec.latest(), timeout)


def start_offsets(admin: AdminClient, topic: str, partitions: list[int], timeout: float = 5):
    """The first offset still kept per partition: records before it have expired."""
    return _offsets(admin, topic, partitions, OffsetSpec.earliest(), timeout)


# What a ListOffsets sent to a leader the client's metadata no longer names gets back.
_STALE_LEADER = (
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
)


def _offsets(admin: AdminClient, topic: str, partitions: list[int], at: OffsetSpec, timeout):
    """ListOffsets, asked again until ``timeout`` while the answer says the leader was stale:
    right after the brokers restarted, librdkafka passed FENCED_LEADER_EPOCH back to the caller
    instead of refreshing its metadata and asking again."""
    request = {TopicPartition(topic, p): at for p in partitions}
    deadline = time.monotonic() + timeout
    while True:
        futures = admin.list_offsets(request, request_timeout=timeout)
        try:
            return {tp.partition: f.result(timeout=timeout + 1).offset for tp, f in futures.items()}
        except KafkaException as exc:
            error = exc.args[0]
            if not (isinstance(error, KafkaError) and error.code() in _STALE_LEADER):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def topic_config(admin: AdminClient, topic: str, timeout: float = 5) -> dict[str, str]:
    """The topic's effective configs, defaults included, as the brokers describe them."""
    resource = ConfigResource(ResourceType.TOPIC, topic)
    future = admin.describe_configs([resource], request_timeout=timeout)[resource]
    return {name: entry.value for name, entry in future.result(timeout=timeout + 1).items()}


def committed_offsets(
    bootstrap: str, group: str, topic: str, partitions=range(3), timeout=5, security=None
):
    """The group's committed offset per partition (partitions never committed are omitted).

    Asked through a Consumer, not AdminClient.list_consumer_group_offsets: in confluent-kafka
    2.16.1 that call crashes the interpreter (SIGSEGV) while __consumer_offsets does not exist
    yet, whereas Consumer.committed() raises a KafkaException. The consumer never subscribes,
    so it does not join the group.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "logger": _quiet,
            "error_cb": lambda _err: None,
            **(security or {}),
        }
    )
    try:
        asked = [TopicPartition(topic, p) for p in partitions]
        answer = consumer.committed(asked, timeout=timeout)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in answer if tp.offset >= 0}


# kafka-init leaves an existing topic as it is, and so does `up`: it stops and says this.
START_OVER = "run `python -m localcluster down --wipe` to start over"


def require_shape(parts: list[PartitionState], spec: TopicSpec) -> None:
    rf = sorted({len(p.replicas) for p in parts})
    if len(parts) != spec.partitions or rf != [spec.replication_factor]:
        raise ClusterError(
            f"topic {spec.name} exists with {len(parts)} partitions and RF {rf}, but"
            f" docker-compose.yml asks for {spec.partitions} and RF {spec.replication_factor}:"
            f" {START_OVER}"
        )


def require_config(config: dict[str, str], spec: TopicSpec) -> None:
    wrong = [name for name, value in spec.config.items() if config.get(name) != value]
    if wrong:
        has = ", ".join(f"{name}={config.get(name)}" for name in wrong)
        wants = ", ".join(f"{name}={spec.config[name]}" for name in wrong)
        raise ClusterError(
            f"topic {spec.name} exists with {has}, but docker-compose.yml asks for {wants}:"
            f" {START_OVER}"
        )


# What the errors seen while a cluster starts mean, in words for progress lines.
_WAITING_WORDS = {
    KafkaError.NOT_COORDINATOR: "the group coordinator is not ready yet",
    KafkaError.COORDINATOR_NOT_AVAILABLE: "the group coordinator is not ready yet",
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS: "the group coordinator is still loading",
    KafkaError._TRANSPORT: "a broker closed the connection",
    KafkaError._ALL_BROKERS_DOWN: "no broker answers yet",
    KafkaError._TIMED_OUT: "no answer in time",
    KafkaError.REQUEST_TIMED_OUT: "no answer in time",
    KafkaError.UNKNOWN_TOPIC_OR_PART: "the brokers do not know the topic yet",
    KafkaError.LEADER_NOT_AVAILABLE: "a partition has no leader yet",
    KafkaError.NOT_CONTROLLER: "the controller is changing",
    KafkaError.BROKER_NOT_AVAILABLE: "a broker is not available yet",
}


def wait_error(exc: BaseException) -> str:
    """A short reason for a failed admin call, for progress lines: words, then the error's name
    in brackets (``the group coordinator is not ready yet (NOT_COORDINATOR)``), never a repr."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    if isinstance(error, KafkaError):
        words = _WAITING_WORDS.get(error.code()) or error.str()
        return f"{words} ({error.name()})"
    if isinstance(error, TimeoutError):
        return f"no answer in time ({type(error).__name__})"
    return f"{error} ({type(error).__name__})" if str(error) else type(error).__name__
