"""The loss window of RF 2 with min.insync.replicas=1, shown, and the setting that closes it.

Cut only the link between a partition's leader and its follower, both still reaching the
controller quorum: after replica.lag.time.max.ms the ISR shrinks to the leader, and writes are
acknowledged on that one copy. Losing that copy then loses them, unless the follower may not
lead (unclean election off: the partition waits for its leader). With min.insync.replicas=2,
the leader refuses such writes with NOT_ENOUGH_REPLICAS instead.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import NewTopic

from support.kafka_tools import java_tool
from support.nemesis import Nemesis
from support.processes import Apps
from support.tail import Tail
from support.waits import wait_until

from .partition_state import REPLICATION, acked_in, isr, leader_and_follower, leader_is
from .workload import Workload

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]


@pytest.mark.parametrize("election", ["clean", "unclean"])
def test_isr_shrink_then_leader_killed(
    election: str,
    kafka_cluster,
    fresh_topic: str,
    apps: Apps,
    tail: Tail,
    tmp_path,
    chaos: Nemesis,
    figures,
) -> None:
    """Matrix row 3. Clean: partition 0 waits without a leader until its old leader is back,
    and nothing is lost. Unclean (the control): the follower is made leader; the writes
    acknowledged on the old leader's copy alone are lost, and the checker must say so."""
    leader, follower = leader_and_follower(kafka_cluster, fresh_topic)
    work = Workload(apps, fresh_topic, tmp_path, tail)
    work.start()
    try:
        cut_at = time.monotonic()
        chaos.cut(leader, follower, listeners=REPLICATION)
        wait_until(lambda: isr(kafka_cluster, fresh_topic) == [leader], 60, "ISR shrink")
        alone_from = time.monotonic()
        wait_until(lambda: acked_in(tail, 0, alone_from, time.monotonic()) >= 100, 30, "acks")
        kafka_cluster.kill(leader)
        killed = time.monotonic()
        acked_alone = acked_in(tail, 0, alone_from, killed)
        # Also on the leader's copy alone: what was written from the cut to the shrink, held
        # until the ISR no longer waited for the follower, then acknowledged all at once.
        acked_after_cut = acked_in(tail, 0, cut_at, killed)
    finally:
        chaos.heal()
    # The controller fences the killed leader after its broker session (9 s); the partition is
    # then leaderless, its only live replica out of sync.
    # Each look runs Kafka's tool, a JVM: a second apart, not back to back, on two cores.
    wait_until(
        lambda: leader_is(kafka_cluster, fresh_topic, None), 90, "partition 0 offline", every=1
    )
    if election == "unclean":  # Kafka's own kafka-leader-election.sh, run from the jars
        command = java_tool(
            "org.apache.kafka.tools.LeaderElectionCommand",
            "--bootstrap-server", kafka_cluster.bootstrap, "--election-type", "unclean",
            "--topic", fresh_topic, "--partition", "0", brief=True,
        )  # fmt: skip
        elected = subprocess.run(command, capture_output=True, text=True, timeout=120)
        print("kafka-leader-election:", elected.stdout.strip(), elected.stderr.strip()[-500:])
        assert elected.returncode == 0, elected.stdout + elected.stderr
    # None if it never did. Clean: the controller chose no leader when it fenced the old one,
    # which "offline" above already showed; 10 s more show that it stays so.
    watch = 30 if election == "unclean" else 10
    follower_led = wait_until(
        lambda: leader_is(kafka_cluster, fresh_topic, follower), watch, "", every=1, required=False
    )
    kafka_cluster.start_missing()
    back = time.monotonic() - killed
    kafka_cluster.wait_full_isr(fresh_topic, timeout=120)
    result, found = work.finish(
        f"jepsen-3-isr-shrink-then-leader-killed-{election}",
        drain_timeout=120 if election == "clean" else 60,
        expect_loss=election == "unclean",
        acked_on_one_copy=acked_alone,
        acked_after_the_cut=acked_after_cut,
        follower_led=follower_led is not None,
        leader_back_after_s=round(back, 1),
    )
    figures.record(result)
    assert acked_alone >= 100
    if election == "clean":
        assert follower_led is None, "the out-of-sync follower led without an unclean election"
        assert {kind: a.errors() for kind, a in found.items() if a.errors()} == {}
    else:
        lost = {kind: len(a.lost) for kind, a in found.items()}
        assert all(n > 0 for n in lost.values()), f"the checker missed the unclean loss: {lost}"
        assert all("not in the topic" in a.lost[0] for a in found.values())
        # An acknowledgement logged before the cut came after the follower had the record.
        assert result.lost <= acked_after_cut


def test_min_insync_replicas_2_refuses_single_copy_writes(
    kafka_cluster, apps: Apps, tail: Tail, tmp_path, chaos: Nemesis, figures
) -> None:
    """The same cut on a topic with min.insync.replicas=2: once the ISR is the leader alone,
    writes to that partition are refused with NOT_ENOUGH_REPLICAS, not acknowledged; the
    producers retry them, and they are acknowledged once the link is back."""
    topic = f"jepsen-min-isr-2-{time.monotonic_ns()}"
    created = kafka_cluster.admin.create_topics(
        [NewTopic(topic, 3, 2, config={"min.insync.replicas": "2"})], request_timeout=15
    )
    created[topic].result(timeout=20)
    kafka_cluster.wait_full_isr(topic, timeout=30)
    leader, follower = leader_and_follower(kafka_cluster, topic)
    work = Workload(apps, topic, tmp_path, tail)
    work.start()
    refusals: list[str] = []
    with chaos.window(45):
        chaos.cut(leader, follower, listeners=REPLICATION)
        wait_until(lambda: isr(kafka_cluster, topic) == [leader], 60, "ISR shrink")
        alone_from = time.monotonic()
        probe = Producer(  # no retries: the broker's answer itself
            {"bootstrap.servers": kafka_cluster.bootstrap, "acks": "all", "retries": 0}
        )
        for _ in range(3):
            probe.produce(topic, b"probe", partition=0, on_delivery=lambda e, _: refusals.append(
                e.name() if e else "acknowledged"
            ))  # fmt: skip
        probe.flush(15)
        time.sleep(5)
        acked_alone = acked_in(tail, 0, alone_from + 1, time.monotonic())
    kafka_cluster.wait_full_isr(topic, timeout=120)
    result, found = work.finish(
        "jepsen-isr-shrink-min-insync-2",
        probe_answers="/".join(refusals),
        acked_on_one_copy=acked_alone,
    )
    figures.record(result)
    assert refusals == [KafkaError(KafkaError.NOT_ENOUGH_REPLICAS).name()] * 3
    assert acked_alone == 0
    assert {kind: a.errors() for kind, a in found.items() if a.errors()} == {}
