"""`python -m localcluster status --watch`: lag, state and owner per partition of a live group,
refreshed until Ctrl-C or --iterations; a cluster gone away is one red line, not a crash."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from rich.console import Console

from localcluster import admin, status, watch
from localcluster.cluster import LocalCluster, Quorum
from message_model import MessageModel, new_message_id
from support.processes import ROOT
from support.produce import produce_raw

TOPIC = "final-1-topic"
REFRESHED = "Refreshed at "


def run_status(*args: str) -> subprocess.CompletedProcess:
    """`python -m localcluster status ARGS` on the session's cluster (LOCALCLUSTER_* as set)."""
    command = [sys.executable, "-m", "localcluster", "status", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def rows(view: str, title: str, end: str) -> list[list[str]]:
    """The cells of each row of the table titled `title`, up to the text `end`."""
    table = view.split(title, 1)[1].split(end, 1)[0]
    lines = (line for line in table.splitlines() if line.startswith("│"))
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines]


@pytest.fixture
def member(kafka_cluster):
    """A consumer in a fresh group that owns all 3 partitions and has committed partitions 0
    and 1 short of their end (2 never): it stays in the group while the test runs. Each
    partition gets 10 more records first, so that every lag is more than 0."""
    bootstrap = kafka_cluster.bootstrap
    # Records the apps can read: a later test's consumer in a new group starts at the earliest.
    value = MessageModel(new_message_id(), "status --watch test").serialize()
    produce_raw(bootstrap, TOPIC, [(p, None, value, []) for p in (0, 1, 2) for _ in range(10)])
    group, client_id = f"test-watch-{uuid.uuid4().hex[:8]}", f"watcher-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "client.id": client_id,
         "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )  # fmt: skip
    consumer.subscribe([TOPIC])
    deadline = time.monotonic() + 60
    while len(consumer.assignment()) < 3:
        assert time.monotonic() < deadline, f"{group} was not assigned 3 partitions"
        consumer.poll(0.2)  # returns no record: consume() is never called, so none is fetched
    ends = admin.end_offsets(kafka_cluster.admin, TOPIC, [0, 1, 2])
    committed = {0: max(0, ends[0] - 3), 1: max(0, ends[1] - 7)}
    offsets = [TopicPartition(TOPIC, p, offset) for p, offset in committed.items()]
    consumer.commit(offsets=offsets, asynchronous=False)
    try:
        yield group, client_id, ends, committed
    finally:
        consumer.close()


@pytest.mark.cluster
def test_watch_shows_each_partitions_lag_and_owner_and_the_members(kafka_cluster, member):
    group, client_id, ends, committed = member
    found = kafka_cluster.admin.describe_consumer_groups([group])[group].result(timeout=10)
    assert [m.client_id for m in found.members] == [client_id]  # control: one member, ours
    host = found.members[0].host

    result = run_status("--watch", "--interval", "1", "--iterations", "2", "--group", group)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    out = result.stdout
    assert out.count(REFRESHED) == 2, out
    last = out.split(REFRESHED)[-2]  # the second refresh's view
    assert rows(last, f"Consumer groups on {TOPIC}", "Group members") == [
        [
            group, "Stable", str(p), str(committed[p]) if p in committed else "-", str(ends[p]),
            str(ends[p] - committed.get(p, 0)), f"{client_id} {host}",
        ]
        for p in (0, 1, 2)
    ], last  # fmt: skip
    assert rows(last, "Group members", REFRESHED) == [
        [group, client_id, host, f"{TOPIC} [0], [1], [2]"]
    ], last
    assert "[red]" not in out and "cannot" not in out, out
    # Watching joined nothing and committed nothing.
    after = kafka_cluster.admin.describe_consumer_groups([group])[group].result(timeout=10)
    assert [m.client_id for m in after.members] == [client_id]
    assert admin.committed_offsets(kafka_cluster.bootstrap, group, TOPIC) == committed


@pytest.mark.cluster
def test_status_once_shows_the_same_group_table_and_members(kafka_cluster, member):
    group, client_id, ends, committed = member
    result = run_status("--group", group)
    assert result.returncode == 0, result.stderr
    assert REFRESHED not in result.stdout
    table = rows(result.stdout, f"Consumer groups on {TOPIC}", "Group members")
    assert [row[:6] for row in table] == [
        [group, "Stable", str(p), str(committed.get(p, "-")), str(ends[p]),
         str(ends[p] - committed.get(p, 0))]
        for p in (0, 1, 2)
    ], result.stdout  # fmt: skip
    assert all(row[6].startswith(f"{client_id} ") for row in table), result.stdout


@pytest.mark.cluster
def test_watch_exits_0_quietly_on_ctrl_c(kafka_cluster):
    watching = subprocess.Popen(
        [sys.executable, "-m", "localcluster", "status", "--watch", "--interval", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, which a terminal's Ctrl-C signals
    )
    try:
        assert watching.stdout is not None
        seen = ""
        while REFRESHED not in seen:
            line = watching.stdout.readline()
            assert line, f"exited with {watching.wait(10)} before its first refresh"
            seen += line
        os.killpg(watching.pid, signal.SIGINT)
        _, stderr = watching.communicate(timeout=30)
    finally:
        watching.kill()
    assert watching.returncode == 0, stderr
    assert stderr == "", stderr


class Unreachable:
    """admin.registered_brokers for a cluster that does not answer."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *_args, **_kwargs):
        self.calls += 1
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))


def test_watch_keeps_watching_a_cluster_that_does_not_answer(monkeypatch):
    unreachable = Unreachable()
    monkeypatch.setattr(admin, "registered_brokers", unreachable)
    cluster = LocalCluster(say=lambda _: None)
    out = Console(file=io.StringIO(), width=200)
    assert watch.watch(cluster, out, ["g"], True, interval=0.01, iterations=3) == 0
    text = out.file.getvalue()
    line = f"cannot reach the cluster at {cluster.bootstrap}: a broker closed the connection"
    assert text.count(f"\n{line} (_TRANSPORT)\n") == 3, text
    assert text.count(REFRESHED) == 3 and unreachable.calls == 3, text
    assert "Consumer groups" not in text, text  # nothing else was asked


def test_watch_ends_with_0_on_ctrl_c_during_a_refresh(monkeypatch):
    passes = []

    def gather(*_args, **_kwargs):
        passes.append(1)
        if len(passes) == 2:
            raise KeyboardInterrupt
        return status.Snapshot("a cluster", "here:1", [], quorum=Quorum(1, [0, 1, 2], []))

    monkeypatch.setattr(watch, "gather", gather)
    out = Console(file=io.StringIO(), width=200)
    cluster = LocalCluster(say=lambda _: None)
    assert watch.watch(cluster, out, [], True, interval=0.01) == 0
    assert len(passes) == 2 and out.file.getvalue().count(REFRESHED) == 1
