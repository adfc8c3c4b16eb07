"""Dead letters: a record that cannot be processed goes to the dead-letter topic, byte for byte
with its reasons, after a bounded number of attempts; nothing is committed past it before that
write is acknowledged; every other record is processed.

The loops run in-process, as in test_apps.py, so that the processing function can fail on
chosen records. Each loop writes to a dead-letter topic of its own, so that each can be
counted exactly.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, Message, Producer

from batch_message_consumer import consume_batches
from kafka_app import dead_letters
from kafka_app.attempts import Failures
from kafka_app.client_health import ClientHealth
from kafka_app.group_member import GroupMember
from kafka_app.settings import consumer_config
from localcluster.admin import committed_offsets, end_offsets
from message_model import MessageModel
from single_message_consumer import consume_messages
from support.dead_letters import dead_letters_for
from support.figures import Figures
from support.records import fresh_reader
from support.waits import wait_until
from support.witness import witness_read

MAX_ATTEMPTS = 3
KINDS = {"good": 60, "poison": 3, "transient": 3, "permanent": 2}
POISON_VALUES = [b"\xff\xfe not json", None, b'{"content": "no id"}']  # garbage, tombstone, shape


@dataclass
class Produced:
    kind: str
    key: bytes
    value: bytes | None
    message_id: str | None  # None for a poison record


def produce_mixed_stream(bootstrap: str, topic: str) -> dict[tuple[int, int], Produced]:
    """Good records, poison ones, 'transient' ones that fail twice then succeed, and
    'permanent' ones that always fail, interleaved over the 3 partitions; by position."""
    kinds = [kind for kind, count in KINDS.items() for _ in range(count)]
    kinds.sort(key=lambda _: uuid.uuid4())  # interleaved, a different order each run
    poison = iter(POISON_VALUES)
    by_position: dict[tuple[int, int], Produced] = {}
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for n, kind in enumerate(kinds):
        message_id = None if kind == "poison" else str(uuid.uuid4())
        value = next(poison) if kind == "poison" else MessageModel(message_id, kind).serialize()
        record = Produced(kind, f"k{n}".encode(), value, message_id)

        def delivered(err, msg: Message, record: Produced = record) -> None:
            assert err is None, err
            by_position[(msg.partition(), msg.offset())] = record

        producer.produce(topic, value=value, key=record.key, partition=n % 3, on_delivery=delivered)
    assert producer.flush(30) == 0
    return by_position


class Processing:
    """The processing function: fails twice on 'transient' records, always on 'permanent'."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.processed_at: dict[str, float] = {}
        self.first_failure_at: dict[str, float] = {}

    def one(self, message: MessageModel) -> None:
        tries = self.attempts[message.message_id] = self.attempts.get(message.message_id, 0) + 1
        if message.content == "permanent" or (message.content == "transient" and tries <= 2):
            self.first_failure_at.setdefault(message.message_id, time.monotonic())
            self.failures[message.message_id] = self.failures.get(message.message_id, 0) + 1
            raise ValueError(f"cannot process {message.content}")
        self.processed_at.setdefault(message.message_id, time.monotonic())

    def batch(self, messages: list[MessageModel]) -> None:
        for message in messages:
            self.one(message)


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[Message]:
    """The records of `topic` from its beginning: at least `expected`, or what came in time."""
    consumer = fresh_reader(bootstrap)
    consumer.subscribe([topic])
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            records.append(msg)
        elif msg is None and len(records) >= expected:
            break
    consumer.close()
    return records


def run_loop(
    loop: str,
    bootstrap: str,
    topic: str,
    dlq: str,
    group: str,
    stop: threading.Event,
    processing: Processing,
    idle_exit: float,
) -> int:
    consumer = Consumer(consumer_config(bootstrap, group))
    member = GroupMember(consumer, stop, ClientHealth(), idle_exit=idle_exit)
    writer = dead_letters_for(bootstrap, topic, group, dlq)
    failures = Failures(MAX_ATTEMPTS)
    if loop == "batch":
        return consume_batches(member, topic, processing.batch, writer, failures, 10, 1)
    return consume_messages(member, topic, processing.one, writer, failures)


def held_up(produced: dict[tuple[int, int], Produced], processing: Processing) -> float:
    """The longest a record that always failed held up the next record of its partition."""
    longest = 0.0
    for (partition, offset), record in produced.items():
        if record.kind != "permanent":
            continue
        behind = [
            processing.processed_at[r.message_id]
            for (p, o), r in produced.items()
            if p == partition and o > offset and r.message_id in processing.processed_at
        ]
        if behind:
            longest = max(longest, min(behind) - processing.first_failure_at[record.message_id])
    return longest


@pytest.mark.faults
@pytest.mark.timeout(300)
@pytest.mark.parametrize("fault", ["none", "broker-kill"])
@pytest.mark.parametrize("loop", ["batch", "single"])
def test_a_mixed_stream_ends_processed_or_dead_lettered_never_lost(
    loop: str, fault: str, kafka_cluster, fresh_topic: str, figures
) -> None:
    """With fault="broker-kill", the leader of partition 0 is SIGKILLed once a third of the
    records are processed, and started again 5 s later; an independent reader (Kafka's own
    console consumer) then checks both topics."""
    bootstrap = kafka_cluster.bootstrap
    dlq = kafka_cluster.create_topic(f"{fresh_topic}.dlq")
    produced = produce_mixed_stream(bootstrap, fresh_topic)
    group = f"dlq-{loop}-{uuid.uuid4().hex[:8]}"
    # A killed leader's partitions wait for the controller to notice (broker session, 9 s):
    # longer than that with nothing new is the end of the stream.
    idle_exit = 8 if fault == "none" else 30
    stop = threading.Event()
    processing = Processing()
    outcome: list[int] = []
    args = (loop, bootstrap, fresh_topic, dlq, group, stop, processing, idle_exit)
    running = threading.Thread(target=lambda: outcome.append(run_loop(*args)), daemon=True)
    running.start()
    killed = None
    if fault == "broker-kill":
        wait_until(lambda: len(processing.processed_at) >= KINDS["good"] // 3, 60, "a third")
        killed = kafka_cluster.leader_of(fresh_topic, 0)
        kafka_cluster.kill(killed)
        time.sleep(5)
        kafka_cluster.start_missing()
    running.join(200)
    if running.is_alive():  # a stuck loop fails the test, and is told to stop
        stop.set()
        running.join(60)
    status = outcome[0] if outcome else None
    letters = read_topic(bootstrap, dlq, KINDS["poison"] + KINDS["permanent"])
    processed = set(processing.processed_at)
    ends = end_offsets(kafka_cluster.admin, fresh_topic, [0, 1, 2], timeout=15)
    committed = committed_offsets(bootstrap, group, fresh_topic, timeout=15)
    figures.record(
        Figures(
            f"dead-letters-{loop}" + ("" if killed is None else f"-broker-{killed}-killed"),
            sent=len(produced),
            acked=len(produced),
            processed=len(processed),
            lost=len(produced) - len(processed) - len(letters),
            extra={
                "dead_letters": len(letters),
                "max_attempts": MAX_ATTEMPTS,
                "held_up_behind_a_failing_record_s": round(held_up(produced, processing), 1),
                "lag": sum(ends.values()) - sum(committed.values()),
            },
        )
    )
    assert status == 0 and not stop.is_set(), "the loop did not end by itself"
    if killed is not None:  # the witness: both topics hold what the loop's readers saw
        witnessed = {(p, o): (k, v) for p, o, k, v in witness_read(bootstrap, fresh_topic)}
        assert witnessed == {pos: (r.key, r.value) for pos, r in produced.items()}
        in_dlq = sorted((k, v or b"") for _, _, k, v in witness_read(bootstrap, dlq))
        assert in_dlq == sorted((m.key(), m.value() or b"") for m in letters)

    # Exactly the poison and the permanently failing records, each once, byte for byte.
    dead = {p for p, r in produced.items() if r.kind in ("poison", "permanent")}
    positions = []
    for letter in letters:
        h = dead_letters.read(letter)
        position = (int(h[dead_letters.ORIGINAL_PARTITION]), int(h[dead_letters.ORIGINAL_OFFSET]))
        positions.append(position)
        record = produced[position]
        assert (letter.key(), letter.value()) == (record.key, record.value), "changed on its way"
        assert h[dead_letters.ORIGINAL_TOPIC] == fresh_topic
        assert h[dead_letters.ORIGINAL_GROUP] == group
        assert int(h[dead_letters.ORIGINAL_TIMESTAMP]) > 0
        assert 0 < int(h[dead_letters.FIRST_FAILURE]) <= int(h[dead_letters.LAST_FAILURE])
        if record.kind == "poison":
            assert h[dead_letters.EXCEPTION_CLASS] == "message_model.MessageDecodeError"
            assert h[dead_letters.ATTEMPTS] == "1"
        else:
            assert h[dead_letters.EXCEPTION_CLASS] == "builtins.ValueError"
            assert h[dead_letters.EXCEPTION_MESSAGE] == "cannot process permanent"
            assert h[dead_letters.ATTEMPTS] == str(MAX_ATTEMPTS)
    assert sorted(positions) == sorted(dead)

    # Every other record processed, transient ones after their two failures. (A record may
    # be processed more than once: one processed in a batch that then failed comes again.)
    wanted = {r.message_id for r in produced.values() if r.kind in ("good", "transient")}
    assert processed == wanted
    for record in produced.values():
        if record.kind == "transient":
            assert processing.failures[record.message_id] == 2
        if record.kind == "permanent":  # in a batch, and then MAX_ATTEMPTS times alone
            assert processing.failures[record.message_id] >= MAX_ATTEMPTS
    assert committed == ends, "lag is not 0"


@pytest.mark.faults
@pytest.mark.timeout(180)
def test_without_its_dead_letter_topic_a_record_waits_uncommitted(
    kafka_cluster, fresh_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The dead-letter topic is missing: nothing is committed past the poison record, one
    error line per try says why; once the topic exists, the record goes there and the
    records behind it are processed."""
    bootstrap = kafka_cluster.bootstrap
    dlq = f"{fresh_topic}.dlq"
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for n, value in enumerate([MessageModel("before", "ok").serialize(), b"poison"]):
        producer.produce(fresh_topic, value=value, key=f"k{n}".encode(), partition=0)
    producer.produce(fresh_topic, value=MessageModel("after", "ok").serialize(), partition=0)
    assert producer.flush(30) == 0
    group = f"dlq-missing-{uuid.uuid4().hex[:8]}"
    processed: list[str] = []
    stop = threading.Event()
    member = GroupMember(Consumer(consumer_config(bootstrap, group)), stop, ClientHealth())
    writer = dead_letters_for(bootstrap, fresh_topic, group)
    caplog.set_level(logging.INFO)
    process = lambda m: processed.append(m.message_id)  # noqa: E731
    loop = threading.Thread(
        target=consume_messages,
        args=(member, fresh_topic, process, writer, Failures(MAX_ATTEMPTS)),
        daemon=True,
    )
    loop.start()
    try:
        cannot = f"Cannot write the dead letter of {fresh_topic} [0] @ 1 to {dlq}"
        wait_until(lambda: cannot in caplog.text, 60, "the dead letter's error line")
        time.sleep(3)  # more tries, and time for a wrongful commit to show
        assert processed == ["before"], "a record behind the waiting one was processed"
        assert committed_offsets(bootstrap, group, fresh_topic, [0], timeout=15) == {0: 1}
        kafka_cluster.create_topic(dlq)
        wait_until(lambda: processed == ["before", "after"], 90, "the record behind it")
        wait_until(
            lambda: committed_offsets(bootstrap, group, fresh_topic, [0], timeout=15) == {0: 3},
            30,
            "the commit past all three",
        )
    finally:
        stop.set()
        loop.join(60)
    [letter] = read_topic(bootstrap, dlq, 1)
    assert letter.value() == b"poison" and letter.key() == b"k1"
    assert dead_letters.read(letter)[dead_letters.ORIGINAL_OFFSET] == "1"
