"""Full disks (support.disks): each node's log dir is a small tmpfs of its own, filled to the
last page while the workload runs. A broker whose only log dir fails stops (Kafka halts a
broker whose metadata log dir is offline); a write that met ENOSPC was never acknowledged, so
nothing acknowledged is lost once the disks have room again and the brokers are back."""

from __future__ import annotations

import time

import pytest

from support import disks
from support.nemesis import Nemesis
from support.processes import Apps
from support.tail import Tail
from support.waits import wait_until

from .partition_state import acked_in, described, leader_and_follower
from .workload import Workload

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]
HALTED = "Shutdown broker because all log dirs"  # Kafka's line when its only log dir failed


def stop_lines(node, offset: int, most: int = 4) -> list[str]:
    with node.log_file.open("rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").splitlines()
    return [line[:300] for line in lines if "ERROR" in line or "FATAL" in line][:most]


def test_follower_disk_full_then_the_leaders(
    kafka_cluster, fresh_topic: str, apps: Apps, tail: Tail, tmp_path, chaos: Nemesis, figures
) -> None:
    """Matrix row 11: partition 0's follower's disk fills; it stops, and the ISR shrinks to the
    leader, whose copy alone then holds the new writes. Then the leader's disk fills and it
    stops too: with two of the three controllers gone the whole cluster waits. The disks are
    freed, both brokers start again, and the leader's copy comes back whole."""
    leader, follower = leader_and_follower(kafka_cluster, fresh_topic)
    nodes = {node.node_id: node for node in kafka_cluster.local.nodes}
    work = Workload(apps, fresh_topic, tmp_path, tail)
    work.start()
    taken: dict[int, int] = {}
    log_from = {n: nodes[n].log_size() for n in (follower, leader)}
    try:
        taken[follower] = disks.fill(nodes[follower].data_dir)
        follower_stopped = wait_until(
            lambda: not nodes[follower].alive(), 60, "the follower to stop on its full disk"
        )
        shrunk = (str(leader), [leader])  # asked of Kafka's tool: see described()
        wait_until(  # each look runs a JVM: a second apart, not back to back
            lambda: described(kafka_cluster, fresh_topic) == shrunk, 60, "ISR shrink", every=1
        )
        alone_from = time.monotonic()
        wait_until(lambda: acked_in(tail, 0, alone_from, time.monotonic()) >= 100, 30, "acks")
        taken[leader] = disks.fill(nodes[leader].data_dir)
        leader_stopped = wait_until(
            lambda: not nodes[leader].alive(), 60, "the leader to stop on its full disk"
        )
        acked_alone = acked_in(tail, 0, alone_from, time.monotonic())
    finally:
        for node in nodes.values():
            disks.free(node.data_dir)
    freed = time.monotonic()
    kafka_cluster.start_missing()
    back = time.monotonic() - freed
    kafka_cluster.wait_full_isr(fresh_topic, timeout=120)
    for n in (follower, leader):  # what each logged when its disk filled, and why it stopped
        print(f"node {n} on its full disk:", *stop_lines(nodes[n], log_from[n]), sep="\n  ")
    result, found = work.finish(
        "jepsen-11-disks-full",
        filled_mb="/".join(str(taken[n] >> 20) for n in (follower, leader)),
        follower_stopped_after_s=round(follower_stopped, 1),
        leader_stopped_after_s=round(leader_stopped, 1),
        acked_on_one_copy=acked_alone,
        brokers_back_after_s=round(back, 1),
    )
    figures.record(result)
    assert acked_alone >= 100
    for n in (follower, leader):  # stopped by its full disk, not by anything else
        assert nodes[n].log_contains(HALTED, log_from[n]), f"node {n} logged no {HALTED!r}"
    assert {kind: a.errors() for kind, a in found.items() if a.errors()} == {}
