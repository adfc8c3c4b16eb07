"""A wedged client must end its script (exit status 3, for a restart), not freeze it.

test_broker_faults.py's full cluster restart caught librdkafka 2.16 clients waiting forever:
blocked in a synchronous commit, or consuming and producing nothing, while the cluster was
back. The cause is confluentinc/librdkafka#5301: the last broker of a cluster shutting down
answered a Metadata request with no broker at all, and the client forgot every broker it knew.
No broker can be made to answer so on demand, so these tests give the scripts' safeguards the
state itself: a commit() that never returns, and the client's own statistics with its brokers
gone.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from batch_message_consumer import consume_batches
from kafka_app import commits
from kafka_app.attempts import Failures
from kafka_app.client_health import STRANDED_AFTER_SECONDS, ClientHealth
from kafka_app.group_member import GroupMember
from kafka_app.lifecycle import EXIT_CLIENT_STUCK
from kafka_app.settings import consumer_config
from localcluster.admin import committed_offsets
from single_message_consumer import consume_messages, process_message
from support.dead_letters import dead_letters_for


class Exited(Exception):
    pass


class StuckConsumer:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def commit(self, offsets: list, asynchronous: bool) -> list:
        self.calls += 1
        self.release.wait(30)  # "forever", bounded so the thread ends after the test
        return offsets


@pytest.mark.faults
def test_stuck_commit_exits_with_client_stuck_status(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = StuckConsumer()
    exits: list[tuple[int, float]] = []

    def fake_exit(status: int) -> None:
        exits.append((status, time.monotonic()))
        consumer.release.set()  # the real os._exit ends the process, commit() and all

    monkeypatch.setattr(commits.os, "_exit", fake_exit)
    monkeypatch.setattr(commits, "COMMIT_TIMEOUT_SECONDS", 0.5)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.CRITICAL):
            commits.commit_offsets(consumer, {("topic", 0): 42})
    finally:
        consumer.release.set()

    assert consumer.calls == 1
    assert [status for status, _ in exits] == [EXIT_CLIENT_STUCK]
    elapsed = exits[0][1] - started
    assert 0.5 <= elapsed < 3, f"gave up after {elapsed:.1f} s"
    assert "did not complete in" in caplog.text and "topic [0]@42" in caplog.text


class AnsweringConsumer:
    def __init__(self, error: KafkaException | None = None) -> None:
        self.error = error

    def commit(self, offsets: list, asynchronous: bool) -> list:
        if self.error:
            raise self.error
        return offsets


@pytest.mark.faults
def test_a_commit_that_answers_leaves_no_watchdog_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound changes nothing for a commit that answers, or fails, in time."""
    exits: list[int] = []
    monkeypatch.setattr(commits.os, "_exit", exits.append)
    monkeypatch.setattr(commits, "COMMIT_TIMEOUT_SECONDS", 0.3)
    assert commits.commit_offsets(AnsweringConsumer(), {("topic", 0): 42}) == {}
    refused = KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    assert commits.commit_offsets(AnsweringConsumer(refused), {("topic", 1): 7}) == {
        ("topic", 1): 7
    }
    time.sleep(1.5)  # the bound and the watchdog's check period: it would have fired by now
    assert exits == []


def real_statistics(bootstrap: str) -> dict:
    """One statistics document of a producer connected to the test cluster."""
    documents: list[str] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "statistics.interval.ms": 100,
            "stats_cb": documents.append,
        }
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        producer.poll(0.1)
        latest = json.loads(documents[-1]) if documents else {"brokers": {}}
        if any(b["source"] == "learned" for b in latest["brokers"].values()):
            return latest
    raise AssertionError("no statistics listing the brokers within 30 s")


@pytest.mark.faults
def test_a_client_that_knows_no_broker_is_stranded(
    kafka_cluster, caplog: pytest.LogCaptureFixture
) -> None:
    stats = real_statistics(kafka_cluster.bootstrap)
    sources = {b["source"] for b in stats["brokers"].values()}
    assert "learned" in sources, sources
    # What librdkafka leaves after a Metadata response with no broker: none but its own
    # internal and logical ones, which statistics may list too.
    gone = dict(stats, brokers={
        name: b for name, b in stats["brokers"].items() if b["source"] in ("internal", "logical")
    })  # fmt: skip
    clock = [1000.0]
    errors = ClientHealth(clock=lambda: clock[0])

    errors.on_stats(json.dumps(stats))
    errors.on_stats(json.dumps(gone))
    clock[0] += STRANDED_AFTER_SECONDS - 1
    errors.on_stats(json.dumps(gone))
    assert not errors.stranded and not errors.broken, "stranded before the grace period"
    errors.on_stats(json.dumps(stats))  # a broker again: the count starts over
    errors.on_stats(json.dumps(gone))
    clock[0] += STRANDED_AFTER_SECONDS - 1
    errors.on_stats(json.dumps(gone))
    assert not errors.stranded
    with caplog.at_level(logging.CRITICAL):
        clock[0] += 1
        errors.on_stats(json.dumps(gone))
    assert errors.stranded and errors.broken
    assert "has known no broker for 15 s" in caplog.text and "#5301" in caplog.text


@pytest.mark.faults
def test_a_stranded_consumer_stops_with_status_3(kafka_cluster, fresh_topic: str) -> None:
    """Given up on, a consumer closes and says so with its exit status, for a restart."""
    health = ClientHealth()
    config = consumer_config(kafka_cluster.bootstrap, "stranded-test", None, health.callbacks())
    assert config["stats_cb"] == health.on_stats and config["statistics.interval.ms"] > 0
    health.stranded = True
    started = time.monotonic()
    member = GroupMember(Consumer(config), threading.Event(), health)
    dead_letters = dead_letters_for(kafka_cluster.bootstrap, fresh_topic, "stranded-test")
    status = consume_messages(member, fresh_topic, process_message, dead_letters, Failures(5))
    assert status == EXIT_CLIENT_STUCK
    assert time.monotonic() - started < 30


class StrandedWhileConsuming(Consumer):
    """A real consumer whose client turns stranded in the call that returns the first
    messages, as ClientHealth.on_stats would mark it from inside that call."""

    errors: ClientHealth

    def consume(self, *args, **kwargs):  # type: ignore[override]
        return self._stranded_if(super().consume(*args, **kwargs))

    def poll(self, *args, **kwargs):  # type: ignore[override]
        return self._stranded_if(super().poll(*args, **kwargs))

    def _stranded_if(self, got):
        if got:
            self.errors.stranded = True
        return got


@pytest.mark.faults
@pytest.mark.parametrize("kind", ["batch", "single"])
def test_messages_fetched_as_the_client_strands_are_left_for_redelivery(
    kafka_cluster, fresh_topic: str, kind: str
) -> None:
    """Their commit could never answer: processing them would only add a duplicate and a
    120 s wait for the commit bound. Nothing is processed or committed; the exit status is 3."""
    producer = Producer({"bootstrap.servers": kafka_cluster.bootstrap})
    for n in range(3):
        producer.produce(fresh_topic, f'{{"message_id":"m{n}","content":"c{n}"}}'.encode())
    assert producer.flush(30) == 0
    errors = ClientHealth()
    group = f"stranded-{kind}-{time.monotonic_ns()}"
    consumer = StrandedWhileConsuming(
        consumer_config(kafka_cluster.bootstrap, group, None, errors.callbacks())
    )
    consumer.errors = errors
    handled: list = []
    member = GroupMember(consumer, threading.Event(), errors)
    started = time.monotonic()
    dead_letters = dead_letters_for(kafka_cluster.bootstrap, fresh_topic, group)
    failures = Failures(5)
    if kind == "batch":
        status = consume_batches(
            member, fresh_topic, handled.extend, dead_letters, failures, batch_window=5
        )
    else:
        status = consume_messages(member, fresh_topic, handled.append, dead_letters, failures)
    assert status == EXIT_CLIENT_STUCK
    assert time.monotonic() - started < 60
    assert errors.stranded, "the client never got a message"
    assert handled == [] and member.processed == 0
    assert committed_offsets(kafka_cluster.bootstrap, group, fresh_topic, timeout=15) == {}
