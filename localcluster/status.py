"""What `python -m localcluster status` reports, gathered in one bounded pass: brokers, quorum,
the topic and its dead letters, and the consumer groups with their lag and members.

Nothing here joins a group or commits: groups are listed and described with AdminClient, and
committed offsets are read as admin.committed_offsets reads them (a consumer that never
subscribes). One pass asks each thing once, each call with a timeout, and stops at the first
failure that is not about one topic, so a cluster that went away costs one timeout, not one per
call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from localcluster import admin
from localcluster.cluster import LocalCluster, Quorum
from localcluster.errors import ClusterError

# Kafka's own names for the states (kafka-consumer-groups --describe --state, Kafka UI).
STATE_NAMES = {
    ConsumerGroupState.STABLE: "Stable",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
    ConsumerGroupState.EMPTY: "Empty",
    # A group with committed offsets but no member is Empty: Dead is a group Kafka knows nothing
    # of, which is how one that never existed is described too.
    ConsumerGroupState.DEAD: "Dead (no such group)",
    ConsumerGroupState.UNKNOWN: "Unknown",
}
# A listed group in these states has no member, so none of it reads the topic now.
IDLE = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD}


@dataclass
class Broker:
    node_id: int
    name: str
    pid: int | None
    registered: bool
    log: str


@dataclass
class TopicView:
    name: str
    parts: list[admin.PartitionState] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)
    starts: dict[int, int] | None = None  # asked only where records expire: the dead letters
    problem: str | None = None  # why it could not be shown


@dataclass
class Member:
    client_id: str
    host: str
    assignment: list[tuple[str, int]]  # (topic, partition), sorted


@dataclass
class GroupView:
    name: str
    state: str
    members: list[Member]
    committed: dict[int, int]  # partition -> committed offset, for the partitions ever committed

    def owner(self, topic: str, partition: int) -> Member | None:
        return next((m for m in self.members if (topic, partition) in m.assignment), None)

    def reads(self, topic: str) -> bool:
        return any(t == topic for m in self.members for t, _ in m.assignment)


@dataclass
class Snapshot:
    describe: str  # which cluster: home, bootstrap, port offset
    bootstrap: str
    brokers: list[Broker]
    taken_at: float = field(default_factory=time.time)
    unreachable: str | None = None  # set when the pass stopped early: the one red line
    quorum: Quorum | None = None
    quorum_problem: str | None = None
    quorum_age: float | None = None  # seconds since the quorum was asked, when reused (--watch)
    topic: TopicView | None = None
    dead_letters: TopicView | None = None
    groups: list[GroupView] = field(default_factory=list)
    other_groups: int = 0  # listed by the cluster, not shown: no member reads the topic
    problems: list[str] = field(default_factory=list)  # one group's failure, shown under them

    @property
    def failed(self) -> bool:
        """What makes one-shot `status` exit 1: no cluster, no quorum, or a topic missing."""
        topics = [t for t in (self.topic, self.dead_letters) if t is not None]
        return bool(self.unreachable or self.quorum_problem or any(t.problem for t in topics))


class Stopped(Exception):
    """A call failed for a reason that is not one topic's: the pass ends here."""


def gather(
    cluster: LocalCluster,
    client: AdminClient,
    quorum: Callable[[], Quorum],
    groups: list[str],
    list_all: bool,
    timeout: float = 5,
) -> Snapshot:
    """The cluster's state now. `groups` are always shown; with `list_all`, so is every group
    the cluster lists whose members read the topic (the others are only counted)."""
    registered: list[int] = []
    snapshot = Snapshot(cluster.describe(), cluster.bootstrap, [])
    try:
        try:
            registered = admin.registered_brokers(client, timeout)
        except Exception as exc:
            raise Stopped(
                f"cannot reach the cluster at {cluster.bootstrap}: {admin.wait_error(exc)}"
            ) from exc
        finally:
            snapshot.brokers = brokers(cluster, registered)
        try:
            snapshot.quorum = quorum()
        except ClusterError as exc:
            snapshot.quorum_problem = str(exc)
        snapshot.topic = topic_view(client, cluster.model.topic.name, False, timeout)
        dead_letters = cluster.model.dead_letter_topic.name
        snapshot.dead_letters = topic_view(client, dead_letters, True, timeout)
        if snapshot.topic.problem is None:
            group_views(snapshot, cluster, client, groups, list_all, timeout)
    except Stopped as stop:
        snapshot.unreachable = str(stop)
    return snapshot


def brokers(cluster: LocalCluster, registered: list[int]) -> list[Broker]:
    return [
        Broker(n.node_id, n.name, n.pid(), n.node_id in registered, str(n.log_file))
        for n in cluster.nodes
    ]


def topic_view(client: AdminClient, name: str, with_starts: bool, timeout: float) -> TopicView:
    view = TopicView(name)
    try:
        view.parts = admin.topic_partitions(client, name, timeout)
        numbers = [p.partition for p in view.parts]
        if with_starts:
            view.starts = admin.start_offsets(client, name, numbers, timeout)
        view.ends = admin.end_offsets(client, name, numbers, timeout)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise Stopped(f"topic {name} cannot be described: {admin.wait_error(exc)}") from exc
        view.problem = "does not exist: `python -m localcluster up` creates it"
    except Exception as exc:  # a future's TimeoutError
        raise Stopped(f"topic {name} cannot be described: {admin.wait_error(exc)}") from exc
    return view


def group_views(
    snapshot: Snapshot,
    cluster: LocalCluster,
    client: AdminClient,
    asked: list[str],
    list_all: bool,
    timeout: float,
) -> None:
    """Fills in the groups: described (state, members), then their committed offsets."""
    topic = snapshot.topic
    assert topic is not None
    busy: list[str] = []  # listed groups with members, which may read the topic
    listed: set[str] = set()
    if list_all:
        try:
            result = client.list_consumer_groups(request_timeout=timeout).result(timeout + 1)
        except Exception as exc:
            raise Stopped(f"the consumer groups cannot be listed: {admin.wait_error(exc)}") from exc
        listed = {g.group_id for g in result.valid}
        busy = [g.group_id for g in result.valid if g.state not in IDLE and g.group_id not in asked]
    described = describe(client, asked + busy, snapshot.problems, timeout)
    shown = [described[g] for g in asked if g in described]
    shown += [described[g] for g in busy if g in described and described[g].reads(topic.name)]
    snapshot.other_groups = len(listed - {g.name for g in shown})
    numbers = [p.partition for p in topic.parts]
    for group in shown:
        try:
            group.committed = admin.committed_offsets(
                cluster.bootstrap, group.name, topic.name, numbers, timeout, cluster.security
            )
        except Exception as exc:
            raise Stopped(
                f"committed offsets of {group.name} unknown: {admin.wait_error(exc)}"
            ) from exc
    snapshot.groups = shown


def describe(
    client: AdminClient, names: list[str], problems: list[str], timeout: float
) -> dict[str, GroupView]:
    """Each group's state and members; a group that cannot be described is left out, with its
    reason added to `problems`."""
    views: dict[str, GroupView] = {}
    if not names:
        return views
    futures = client.describe_consumer_groups(names, request_timeout=timeout)
    for name, future in futures.items():
        try:
            found = future.result(timeout + 1)
        except KafkaException as exc:
            problems.append(f"group {name} cannot be described: {admin.wait_error(exc)}")
            continue
        except Exception as exc:  # the coordinators did not answer in time
            raise Stopped(f"group {name} cannot be described: {admin.wait_error(exc)}") from exc
        members = [
            Member(
                m.client_id,
                m.host,
                sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions),
            )
            for m in found.members
        ]
        members.sort(key=lambda m: (m.assignment[:1], m.client_id))
        views[name] = GroupView(name, STATE_NAMES.get(found.state, str(found.state)), members, {})
    return views
