"""The three scripts against a real cluster: nothing acknowledged is lost, nothing is skipped.

Scripts run as real processes (as in Docker) wherever exit codes, signals and logs matter, and
in-process where a test must inject a failing handler. Every wait is bounded. What needs no
cluster (settings, bad values, no reachable broker) is in test_settings.py.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from batch_message_consumer import consume_batches
from kafka_app import commits
from kafka_app.attempts import Failures
from kafka_app.client_health import ClientHealth
from kafka_app.group_member import GroupMember
from kafka_app.settings import DEFAULT_MAX_ATTEMPTS, consumer_config
from localcluster.admin import committed_offsets, end_offsets
from message_model import MessageModel
from single_message_consumer import consume_messages
from support.dead_letters import dead_letters_for
from support.processes import App, app_env, run_script
from support.records import read_records
from support.waits import wait_until

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def start_both_consumers(
    scripts: Callable[..., App], groups: dict[str, str], idle_exit: float, env: dict, tmp_path: Path
) -> dict[str, App]:
    """The batch and the single consumer, each in its group, exiting after `idle_exit` s idle;
    each logs to <kind>.log and records what it processed in processed-<kind>.log."""
    batch_only = {"batch": ["--batch-window", 1], "single": []}
    return {
        kind: scripts(
            f"{kind}_message_consumer.py",
            kind,
            "--group-id",
            groups[kind],
            *batch_only[kind],
            "--idle-exit",
            idle_exit,
            "--processed-log",
            tmp_path / f"processed-{kind}.log",
            env=env,
        )
        for kind in ("batch", "single")
    }


@pytest.fixture
def admin(bootstrap_servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap_servers})


def partitions_of(admin: AdminClient, topic: str) -> list[int]:
    return sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions)


def assert_fully_committed(bootstrap: str, admin: AdminClient, group: str, topic: str) -> None:
    ends = end_offsets(admin, topic, partitions_of(admin, topic), timeout=10)
    committed = committed_offsets(bootstrap, group, topic, list(ends), timeout=10)
    # A partition that never had a record has nothing to commit.
    expected = {p: end for p, end in ends.items() if end > 0}
    assert {p: committed.get(p) for p in expected} == expected, (
        f"group {group}: committed {committed}, end offsets {ends}"
    )


def produce_records(
    bootstrap: str, topic: str, records: list[tuple[int, bytes | None]]
) -> list[tuple[int, int]]:
    """Produce (partition, value) pairs with a plain Producer; return (partition, offset)s."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    positions: list[tuple[int, int] | None] = [None] * len(records)

    def report(index: int):
        def on_delivery(err, msg):
            assert err is None, err
            positions[index] = (msg.partition(), msg.offset())

        return on_delivery

    for index, (partition, value) in enumerate(records):
        producer.produce(
            topic, value=value, key=f"k{index}", partition=partition, on_delivery=report(index)
        )
        producer.flush(15)  # one at a time: offsets in the order given
    assert all(positions), positions
    return positions  # type: ignore[return-value]


def good(n: int) -> tuple[str, bytes]:
    message = MessageModel(str(uuid.uuid4()), f"Test message {n}")
    return message.message_id, message.serialize()


def produce_good(bootstrap: str, topic: str, count: int) -> dict[str, tuple[int, int]]:
    """Produce `count` valid messages round-robin over 3 partitions; return id -> position."""
    messages = [good(n) for n in range(count)]
    positions = produce_records(bootstrap, topic, [(n % 3, v) for n, (_, v) in enumerate(messages)])
    return {message_id: pos for (message_id, _), pos in zip(messages, positions, strict=True)}


def read_topic(bootstrap: str, admin: AdminClient, topic: str, timeout: float = 60) -> dict:
    """Every record of the topic, read back by an independent consumer: (p, offset) -> key."""
    ends = end_offsets(admin, topic, partitions_of(admin, topic), timeout=10)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("reader"),  # never commits: assign() + no auto-commit
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    remaining = {p for p, end in ends.items() if end > 0}
    records = {}
    deadline = time.monotonic() + timeout
    try:
        while remaining:
            assert time.monotonic() < deadline, f"partitions {remaining} not read to the end"
            for msg in consumer.consume(num_messages=10_000, timeout=1.0):
                assert not msg.error(), msg.error()
                records[(msg.partition(), msg.offset())] = msg.key().decode()
                if msg.offset() + 1 >= ends[msg.partition()]:
                    remaining.discard(msg.partition())
    finally:
        consumer.close()
    return records


@pytest.fixture
def safety_stop() -> Iterator[threading.Event]:
    """A stop Event for in-process consumers, set after 60 s so a hung test still ends."""
    stop = threading.Event()
    timer = threading.Timer(60, stop.set)
    timer.start()
    yield stop
    timer.cancel()


# --------------------------------------------------------------------------------------------
# End to end: 2 producers, 2 consumer groups
# --------------------------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.timeout(150)
def test_end_to_end_every_acknowledged_message_is_processed_by_both_groups(
    bootstrap_servers: str,
    fresh_topic: str,
    admin: AdminClient,
    tmp_path: Path,
    scripts: Callable[..., App],
) -> None:
    env = app_env(bootstrap_servers, fresh_topic)
    producers = [
        scripts(
            "producer.py",
            f"producer-{i}",
            "--count",
            200,
            "--interval",
            0,
            "--quiet",
            "--delivered-log",
            tmp_path / f"delivered-{i}.log",
            env=env,
        )
        for i in (1, 2)
    ]
    for producer in producers:
        assert producer.wait(60) == 0, producer.log()
    delivered = set()
    for i in (1, 2):
        records = read_records(tmp_path / f"delivered-{i}.log")
        assert len(records) == 200
        delivered.update(records)
    assert len({message_id for _, _, message_id in delivered}) == 400  # unique ids

    groups = {"batch": unique("batch-group"), "single": unique("single-group")}
    consumers = start_both_consumers(scripts, groups, idle_exit=8, env=env, tmp_path=tmp_path)
    for name, consumer in consumers.items():
        assert consumer.wait(90) == 0, consumer.log()
        processed = set(read_records(tmp_path / f"processed-{name}.log"))
        missing = delivered - processed
        assert not missing, f"{name}: {len(missing)} acknowledged messages never processed"
        assert_fully_committed(bootstrap_servers, admin, groups[name], fresh_topic)

    batch_log, single_log = consumers["batch"].log(), consumers["single"].log()
    assert re.search(
        r"^INFO:root:BatchConsumer received: Test message \d+ from \S+$", batch_log, re.M
    )
    assert re.search(
        rf"^INFO:root:Committed batch of 10 messages: {fresh_topic} \[", batch_log, re.M
    )
    assert re.search(
        r"^INFO:root:SingleConsumer received: Test message \d+ from \S+$", single_log, re.M
    )
    assert "Traceback" not in batch_log + single_log


# --------------------------------------------------------------------------------------------
# A failed batch / message is redelivered, not skipped (in-process, injected failure)
# --------------------------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.timeout(90)
@pytest.mark.parametrize("loop", ["batch", "single"])
def test_failed_processing_is_redelivered(
    loop: str,
    bootstrap_servers: str,
    fresh_topic: str,
    admin: AdminClient,
    safety_stop: threading.Event,
) -> None:
    """Processing raises once: what failed is not committed, and it is processed again."""
    produced = produce_good(bootstrap_servers, fresh_topic, 30 if loop == "batch" else 15)
    group = unique(f"{loop}-fail")
    calls: list[list[str]] = []  # message ids handed to each call of the processing function
    at_retry: list[dict[int, int]] = []  # committed offsets when the failed ones came again

    def fail_first_call(message_ids: list[str]) -> None:
        if calls and not at_retry and set(message_ids) & set(calls[0]):
            # What a crash right now would restart from.
            at_retry.append(committed_offsets(bootstrap_servers, group, fresh_topic, timeout=10))
        calls.append(message_ids)
        if len(calls) == 1:
            raise RuntimeError("simulated processing failure")

    def process_batch(batch: list[MessageModel]) -> None:
        fail_first_call([message.message_id for message in batch])

    def process_message(message: MessageModel) -> None:
        fail_first_call([message.message_id])

    consumer = Consumer(consumer_config(bootstrap_servers, group))
    member = GroupMember(consumer, safety_stop, ClientHealth(), idle_exit=5)
    dead_letters = dead_letters_for(bootstrap_servers, fresh_topic, group)
    failures = Failures(DEFAULT_MAX_ATTEMPTS)
    if loop == "batch":
        status = consume_batches(
            member, fresh_topic, process_batch, dead_letters, failures, 10, batch_window=1
        )
    else:
        status = consume_messages(member, fresh_topic, process_message, dead_letters, failures)

    assert status == 0
    assert not safety_stop.is_set(), "the consumer did not finish on its own"
    failed, later = calls[0], [i for call in calls[1:] for i in call]
    assert failed, "the first call got no message"
    assert set(failed) <= set(later), "messages whose processing failed were never handled again"
    for message_id in failed:
        partition, offset = produced[message_id]
        # Never committed: a restart reads the partition from its beginning.
        restart_at = at_retry[0].get(partition, OFFSET_BEGINNING)
        assert restart_at <= offset, "a message whose processing failed was committed"
    assert set(later) == set(produced)
    assert_fully_committed(bootstrap_servers, admin, group, fresh_topic)


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_rebalance_when_a_second_replica_joins_loses_nothing(
    bootstrap_servers: str,
    fresh_topic: str,
    admin: AdminClient,
    tmp_path: Path,
    scripts: Callable[..., App],
) -> None:
    produced = produce_good(bootstrap_servers, fresh_topic, 240)
    env = app_env(bootstrap_servers, fresh_topic)
    group = unique("batch-rebalance")

    def replica(name: str) -> App:
        return scripts(
            "batch_message_consumer.py",
            name,
            "--group-id",
            group,
            "--batch-window",
            1,
            "--idle-exit",
            6,
            "--process-delay",
            0.02,  # ~5 s of work in all: the second replica joins midway
            "--processed-log",
            tmp_path / f"processed-{name}.log",
            env=env,
        )

    first = replica("first")
    deadline = time.monotonic() + 30
    first_log = tmp_path / "processed-first.log"
    while not first_log.exists() or first_log.stat().st_size == 0:
        assert time.monotonic() < deadline, first.log()
        time.sleep(0.1)
    second = replica("second")
    assert first.wait(90) == 0, first.log()
    assert second.wait(90) == 0, second.log()

    assert "Partitions revoked" in first.log(), "no rebalance happened: test proves nothing"
    assert "Partitions assigned" in second.log()
    processed = {
        message_id
        for name in ("first", "second")
        for _, _, message_id in read_records(tmp_path / f"processed-{name}.log")
    }
    assert set(produced) <= processed
    assert_fully_committed(bootstrap_servers, admin, group, fresh_topic)


@pytest.mark.cluster
@pytest.mark.timeout(60)
def test_a_commit_inside_a_rebalance_callback_returns(
    bootstrap_servers: str, fresh_topic: str, admin: AdminClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """librdkafka calls on_assign / on_revoke inside poll(), and on_revoke commits what a
    refused commit left. confluent-kafka 2.16 admits only the polling thread into the Consumer
    until poll() returns: a commit handed to another thread there waited forever (the
    rebalance fault test stalled in 3 of 9 runs). commits.commit_offsets must commit on the
    calling thread."""
    exits: list[int] = []
    monkeypatch.setattr(commits.os, "_exit", exits.append)  # a hang must fail, not kill
    monkeypatch.setattr(commits, "COMMIT_TIMEOUT_SECONDS", 10.0)
    group = unique("commit-in-callback")
    consumer = Consumer(consumer_config(bootstrap_servers, group))
    outcomes: list[tuple[commits.Offsets, float]] = []

    def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        started = time.monotonic()
        offsets = {(fresh_topic, tp.partition): 0 for tp in partitions}
        outcomes.append((commits.commit_offsets(consumer, offsets), time.monotonic() - started))

    consumer.subscribe([fresh_topic], on_assign=on_assign)
    deadline = time.monotonic() + 30
    try:
        while not outcomes and time.monotonic() < deadline:
            consumer.poll(0.5)
    finally:
        consumer.close()

    assert exits == [], "the commit inside on_assign hung until the watchdog gave up"
    assert outcomes, "no partitions assigned within 30 s"
    failed, took = outcomes[0]
    assert failed == {} and took < 5, (failed, took)
    assert committed_offsets(bootstrap_servers, group, fresh_topic, timeout=10) == {
        p: 0 for p in (0, 1, 2)
    }


# --------------------------------------------------------------------------------------------
# Poison records are skipped and committed past
# --------------------------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_poison_records_are_dead_lettered_and_committed_past(
    kafka_cluster,
    bootstrap_servers: str,
    fresh_topic: str,
    admin: AdminClient,
    tmp_path: Path,
    scripts: Callable[..., App],
) -> None:
    dlq = kafka_cluster.create_topic(f"{fresh_topic}.dlq")  # the scripts' default: <topic>.dlq
    goods = [good(n) for n in range(6)]
    records: list[tuple[int, bytes | None]] = [
        (0, goods[0][1]),
        (0, b"not json at all"),
        (0, goods[1][1]),
        (0, None),  # a tombstone, last in its partition: must still be committed past
        (1, b""),
        (1, goods[2][1]),
        (1, b'{"message_id": "", "content": "empty id"}'),
        (1, b"\xff\xfe invalid utf-8"),
        (1, goods[3][1]),
        (2, goods[4][1]),
        (2, b'{"message_id": "x"}'),  # a required field is missing
        (2, goods[5][1]),
    ]
    positions = produce_records(bootstrap_servers, fresh_topic, records)
    good_values = {value for _, value in goods}
    bad = [
        pos for pos, (_, value) in zip(positions, records, strict=True) if value not in good_values
    ]
    good_records = {
        (*pos, message_id)
        for pos, (_, value) in zip(positions, records, strict=True)
        for message_id, good_value in goods
        if value == good_value
    }
    assert len(bad) == 6 and len(good_records) == 6

    env = app_env(bootstrap_servers, fresh_topic)
    groups = {"batch": unique("batch-poison"), "single": unique("single-poison")}
    consumers = start_both_consumers(scripts, groups, idle_exit=6, env=env, tmp_path=tmp_path)
    for name, consumer in consumers.items():
        assert consumer.wait(60) == 0, consumer.log()
        log = consumer.log()
        processed = set(read_records(tmp_path / f"processed-{name}.log"))
        assert good_records <= processed, f"{name}: good records missing after poison ones"
        for partition, offset in bad:
            assert (partition, offset, "-") in processed
            where = rf"{fresh_topic} \[{partition}\] @ {offset}"
            pattern = rf"^WARNING:root:Dead-lettered {where} to {dlq} after 1 attempt: "
            assert re.search(pattern, log, re.M), f"{name}: no dead letter of {where}"
        assert "Traceback" not in log
        assert_fully_committed(bootstrap_servers, admin, groups[name], fresh_topic)
    # Each group wrote each poison record once, with its key (produce_records': k<index>).
    letters = read_topic(bootstrap_servers, admin, dlq)
    bad_keys = [f"k{i}" for i, (_, value) in enumerate(records) if value not in good_values]
    assert sorted(letters.values()) == sorted(bad_keys * 2), letters


# --------------------------------------------------------------------------------------------
# Producer: SIGTERM under load loses nothing it acknowledged
# --------------------------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_sigterm_under_load_loses_nothing_acknowledged(
    bootstrap_servers: str,
    fresh_topic: str,
    admin: AdminClient,
    tmp_path: Path,
    scripts: Callable[..., App],
) -> None:
    delivered_log = tmp_path / "delivered.log"
    producer = scripts(
        "producer.py",
        "producer",
        "--interval",
        0,
        "--quiet",
        "--delivered-log",
        delivered_log,
        env=app_env(bootstrap_servers, fresh_topic),
    )
    deadline = time.monotonic() + 30
    while not delivered_log.exists() or delivered_log.stat().st_size < 100_000:  # ~2000 lines
        assert producer.process.poll() is None, producer.log()
        assert time.monotonic() < deadline, "the producer delivered too little in 30 s"
        time.sleep(0.05)
    producer.process.send_signal(signal.SIGTERM)
    assert producer.wait(45) == 0, producer.log()
    log = producer.log()
    assert "Stopping (shutdown requested)" in log
    assert "not delivered (still queued) 0" in log

    acknowledged = read_records(delivered_log)
    in_topic = read_topic(bootstrap_servers, admin, fresh_topic)
    lost = [(p, o, i) for p, o, i in acknowledged if in_topic.get((p, o)) != i]
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged messages not in the topic"
    assert len(in_topic) == len(acknowledged), "the topic has messages nobody acknowledged"


# --------------------------------------------------------------------------------------------
# Command line: exit codes and messages
# --------------------------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_count_and_max_messages_exit_zero(
    bootstrap_servers: str, fresh_topic: str, admin: AdminClient, tmp_path: Path
) -> None:
    env = app_env(bootstrap_servers, fresh_topic)
    result = run_script("producer.py", "--count", 12, "--interval", 0.01, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    delivered = re.findall(
        rf"^INFO:root:Message delivered to {fresh_topic} \[(\d)\] @ (\d+)$", result.stderr, re.M
    )
    assert len(delivered) == 12, result.stderr

    batch_only = ["--batch-window", 1]
    for script, extra in [
        ("batch_message_consumer.py", batch_only),
        ("single_message_consumer.py", []),
    ]:
        group = unique("max-messages")
        log = tmp_path / f"{script}.log"
        result = run_script(
            script,
            "--group-id",
            group,
            "--max-messages",
            5,
            "--processed-log",
            log,
            *extra,
            env=env,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "(--max-messages): exiting" in result.stderr
        assert len(read_records(log)) == 5
        committed = committed_offsets(bootstrap_servers, group, fresh_topic, timeout=10)
        assert sum(committed.values()) == 5, committed


# --------------------------------------------------------------------------------------------
# Start-up: a missing topic is one clear line; each client is named
# --------------------------------------------------------------------------------------------

SCRIPTS = ["producer.py", "batch_message_consumer.py", "single_message_consumer.py"]
RUN_BRIEFLY = {  # arguments that make each script stop by itself once past its start-up
    "producer.py": ["--count", 1],
    "batch_message_consumer.py": ["--idle-exit", 2],
    "single_message_consumer.py": ["--idle-exit", 2],
}


@pytest.mark.cluster
@pytest.mark.timeout(120)
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_missing_topic_is_one_error_line_and_exit_2(
    bootstrap_servers: str, fresh_topic: str, admin: AdminClient, script: str
) -> None:
    missing = unique("no-such-topic")
    started = time.monotonic()
    result = run_script(script, *RUN_BRIEFLY[script], env=app_env(bootstrap_servers, missing))
    took = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == [
        f"ERROR:root:Topic {missing} does not exist, and automatic topic creation is off: create"
        " it (topic.txt shows how), or name another with --topic or KAFKA_TOPIC"
    ], result.stderr
    assert took < 15, f"the missing topic took {took:.1f} s to report"
    assert missing not in admin.list_topics(timeout=10).topics  # the attempt created nothing
    # Control: the same script, run the same way, passes the check for a topic that exists.
    control = run_script(script, *RUN_BRIEFLY[script], env=app_env(bootstrap_servers, fresh_topic))
    assert control.returncode == 0, control.stderr
    assert f"Topic {fresh_topic} does not exist" not in control.stderr


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_the_client_id_names_the_group_member_and_the_sender(
    bootstrap_servers: str, fresh_topic: str, admin: AdminClient, scripts: Callable[..., App]
) -> None:
    sender = app_env(bootstrap_servers, fresh_topic, KAFKA_CLIENT_ID="producer-7")
    result = run_script("producer.py", "--count", 3, "--interval", 0.01, env=sender)
    assert result.returncode == 0, result.stderr
    group = unique("client-id")
    consumer = scripts(
        "single_message_consumer.py",
        "single",
        "--group-id",
        group,
        env=app_env(bootstrap_servers, fresh_topic, KAFKA_CLIENT_ID="single-consumer-7"),
    )
    received = "INFO:root:SingleConsumer received: Test message 3 from producer-7"
    wait_until(lambda: received in consumer.log(), 60, "the third message", [consumer])
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    assert [member.client_id for member in description.members] == ["single-consumer-7"]
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(30) == 0, consumer.log()
