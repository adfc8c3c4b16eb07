"""Process pauses (SIGSTOP, as a long GC pause or a frozen VM would), across the thresholds
that matter: the controller quorum's fetch timeout (2 s), the broker session (9 s) and the
consumer session (45 s). Nothing acknowledged is lost, and a paused consumer's partitions
are redelivered, not skipped, under both consumer group protocols."""

from __future__ import annotations

import pytest

from support.nemesis import Nemesis, paused
from support.processes import Apps
from support.protocols import PROTOCOLS
from support.tail import Tail

from .partition_state import leader_and_follower
from .workload import Workload

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]


def test_partition_leader_paused_20s(
    kafka_cluster, fresh_topic: str, apps: Apps, tail: Tail, tmp_path, chaos: Nemesis, figures
) -> None:
    """Matrix row 5: partition 0's leader is stopped for 20 s, past the broker session (9 s):
    the controller fences it and moves its leaderships; when it wakes up it is a follower."""
    leader, _ = leader_and_follower(kafka_cluster, fresh_topic)
    work = Workload(apps, fresh_topic, tmp_path, tail)
    work.start()
    with paused(kafka_cluster.local.node(leader).pid(), 20):
        pass
    kafka_cluster.wait_full_isr(fresh_topic, timeout=120)
    result, found = work.finish("jepsen-5-leader-paused-20s", paused_broker=leader)
    figures.record(result)
    assert {kind: a.errors() for kind, a in found.items() if a.errors()} == {}


def test_active_controller_paused_5s(
    kafka_cluster, fresh_topic: str, apps: Apps, tail: Tail, tmp_path, chaos: Nemesis, figures
) -> None:
    """Matrix row 6: the active controller is stopped for 5 s, past the quorum's fetch timeout
    (2 s) but not the broker session: another controller is elected."""
    controller = kafka_cluster.local.quorum().leader
    assert controller is not None
    work = Workload(apps, fresh_topic, tmp_path, tail)
    work.start()
    with paused(kafka_cluster.local.node(controller).pid(), 5):
        pass
    kafka_cluster.wait_full_isr(fresh_topic, timeout=120)
    after = kafka_cluster.local.quorum().leader
    result, found = work.finish(
        "jepsen-6-controller-paused-5s", paused_controller=controller, controller_after=after
    )
    figures.record(result)
    assert {kind: a.errors() for kind, a in found.items() if a.errors()} == {}


# Left to make chaos, under both protocols, for CI's time. CI's consumer faults: the crash and the
# rebalance (tests/faults/test_consumer_faults.py), the commit-first control, the chaos run's pause.
@pytest.mark.extended
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_consumer_paused_60s(
    protocol: str,
    kafka_cluster,
    fresh_topic: str,
    apps: Apps,
    tail: Tail,
    tmp_path,
    chaos: Nemesis,
    figures,
) -> None:
    """Matrix row 9: one replica of each group is stopped for 60 s, past the consumer session
    (45 s): the group gives its partitions to the other replica, which reads from the last
    commit; the paused one wakes up fenced, and rejoins."""
    work = Workload(
        apps,
        fresh_topic,
        tmp_path,
        tail,
        groups={"batch": 2, "single": 2},
        consumer_args=("--group-protocol", protocol),
    )
    work.start()
    victims = [work.consumers[kind][0] for kind in work.consumers]
    stopped = []
    for victim in victims:
        stopped.append(paused(victim.process.pid, 60))
    with stopped[0], stopped[1]:
        pass
    result, found = work.finish(f"jepsen-9-consumer-paused-60s-{protocol}")
    figures.record(result)
    assert {kind: a.errors() for kind, a in found.items() if a.errors()} == {}
