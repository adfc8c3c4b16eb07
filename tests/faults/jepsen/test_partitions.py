"""Network partitions between brokers (support.nemesis): nothing acknowledged is lost, nothing
is processed out of order, whatever the shape of the cut; and the loss window RF 2 with
min.insync.replicas=1 leaves is shown, with the setting that closes it."""

from __future__ import annotations

import pytest

from support.nemesis import Nemesis
from support.processes import Apps
from support.tail import Tail
from support.waits import wait_until

from .workload import Workload

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]
REPLICA_LAG_S = 30.0  # replica.lag.time.max.ms: a follower silent this long leaves the ISR


def leader_and_follower(kafka_cluster, topic: str, partition: int = 0) -> tuple[int, int]:
    state = next(p for p in kafka_cluster.partitions(topic) if p.partition == partition)
    follower = next(r for r in state.replicas if r != state.leader)
    return state.leader, follower


def isr(kafka_cluster, topic: str, partition: int = 0) -> list[int]:
    return next(p.isr for p in kafka_cluster.partitions(topic) if p.partition == partition)


def test_leader_follower_link_cut_shrinks_the_isr_and_loses_nothing(
    kafka_cluster, fresh_topic: str, apps: Apps, tail: Tail, tmp_path, chaos: Nemesis, figures
) -> None:
    """Matrix row 2: only the link between partition 0's leader and its follower is cut, for
    45 s; both still reach the controller quorum. After replica.lag.time.max.ms the ISR shrinks
    to the leader, and writes are acknowledged on that one copy: min.insync.replicas=1."""
    leader, follower = leader_and_follower(kafka_cluster, fresh_topic)
    work = Workload(apps, fresh_topic, tmp_path, tail)
    work.start()
    with chaos.window(45):
        chaos.cut(leader, follower)
        shrunk = wait_until(lambda: isr(kafka_cluster, fresh_topic) == [leader], 60, "ISR shrink")
        during = work.acked_count()
    acked_alone = work.acked_count() - during  # acknowledged while the ISR was the leader alone
    regrown = wait_until(lambda: len(isr(kafka_cluster, fresh_topic)) == 2, 90, "ISR regrown")
    result, found = work.finish(
        "jepsen-2-leader-follower-cut-45s",
        isr_shrunk_after_s=round(shrunk, 1),
        acked_on_one_copy=acked_alone,
        isr_regrown_after_heal_s=round(regrown, 1),
    )
    figures.record(result)
    assert {kind: a.errors() for kind, a in found.items() if a.errors()} == {}
    assert shrunk >= REPLICA_LAG_S - 5, f"the ISR shrank {shrunk:.1f} s after the cut"
    assert acked_alone > 0, "nothing acknowledged while the ISR was the leader alone"
