"""Unit tests of the consumers' decision step, kafka_app/attempts.py, and of what follows it in
kafka_app/dead_letters.py and producer.py: no Kafka needed (the records are confluent_kafka
Message objects built in memory), well under a second."""

from collections.abc import Callable

import pytest
from confluent_kafka import Message

import producer
from kafka_app import attempts, dead_letters, lifecycle
from kafka_app.attempts import Failures, Outcome, attempt, retry_pause
from message_model import MessageDecodeError, MessageModel


def record(offset: int, value: bytes | None = None, partition: int = 0) -> Message:
    """A record at ``offset``: a MessageModel with id ``id-<offset>`` unless ``value`` is given."""
    value = value or MessageModel(f"id-{offset}", f"Test message {offset}").serialize()
    return Message(topic="t", partition=partition, offset=offset, value=value)


def tombstone(offset: int) -> Message:
    return Message(topic="t", partition=0, offset=offset, value=None)


class Processor:
    """The business logic under test: records what it was given; fails while ``failing``."""

    def __init__(self, failing: Callable[[list[MessageModel]], bool] = lambda _: False) -> None:
        self.calls: list[list[str]] = []
        self.failing = failing

    def __call__(self, records: list[MessageModel]) -> None:
        self.calls.append([r.message_id for r in records])
        if self.failing(records):
            raise RuntimeError("processing failed")


def offsets(pairs: list[tuple[Message, object]]) -> list[int]:
    return [msg.offset() for msg, _ in pairs]


def test_all_good_is_done_with_every_message_id_in_order() -> None:
    batch = [record(n) for n in range(3)]
    process = Processor()
    outcome = attempt(batch, process, Failures(5))
    assert process.calls == [["id-0", "id-1", "id-2"]]
    assert outcome == Outcome(done=[(batch[0], "id-0"), (batch[1], "id-1"), (batch[2], "id-2")])
    assert not outcome.retry and not outcome.dead


def test_poison_mixed_in_goes_to_the_dead_letters_and_the_rest_is_processed() -> None:
    batch = [record(0), record(1, b"not json"), tombstone(2), record(3)]
    process = Processor()
    outcome = attempt(batch, process, Failures(5))
    assert process.calls == [["id-0", "id-3"]]  # poison never reaches the business logic
    assert not outcome.retry
    assert offsets(outcome.dead) == [1, 2]
    assert all(isinstance(f.error, MessageDecodeError) and f.attempts == 1 for _, f in outcome.dead)
    assert "tombstone" in str(outcome.dead[1][1].error)
    # Done: the whole batch, in its order (commits take the last offset per partition).
    assert outcome.done == [
        (batch[0], "id-0"),
        (batch[1], None),
        (batch[2], None),
        (batch[3], "id-3"),
    ]


def test_a_batch_of_only_poison_processes_nothing() -> None:
    process = Processor()
    outcome = attempt([tombstone(0), record(1, b"{}")], process, Failures(5))
    assert process.calls == []
    assert offsets(outcome.dead) == [0, 1] and offsets(outcome.done) == [0, 1]


def test_a_failed_batch_splits_without_counting_an_attempt() -> None:
    batch = [record(n) for n in range(3)]
    failures = Failures(2)
    outcome = attempt(batch, Processor(lambda _: True), failures)
    assert outcome == Outcome(retry=True, split=True)  # rewind now, then one at a time
    # No record is charged for the batch's failure: each is tried alone next.
    again = attempt([batch[0]], Processor(lambda _: True), failures)
    assert again.retry and not again.split and not again.dead


def test_a_single_failure_is_retried_with_growing_pauses_then_dead_lettered() -> None:
    msg, failures = record(7), Failures(4)
    fails = Processor(lambda _: True)
    pauses = []
    for tries in range(1, 4):
        outcome = attempt([msg], fails, failures)
        assert outcome.retry and not outcome.split and not outcome.dead, tries
        pauses.append(outcome.pause)
    outcome = attempt([msg], fails, failures)
    assert not outcome.retry
    assert offsets(outcome.dead) == [7] and outcome.done == [(msg, None)]
    failure = outcome.dead[0][1]
    assert failure.attempts == 4 and isinstance(failure.error, RuntimeError)
    assert failure.first_at <= failure.last_at
    # Jittered between half and all of 0.5, 1, 2 s: each range above the one before it.
    assert 0.25 <= pauses[0] <= 0.5 and 0.5 <= pauses[1] <= 1.0 and 1.0 <= pauses[2] <= 2.0


def test_a_record_that_succeeds_on_a_retry_is_done_and_forgotten() -> None:
    msg, failures = record(3), Failures(5)
    assert attempt([msg], Processor(lambda _: True), failures).retry
    outcome = attempt([msg], Processor(), failures)
    assert outcome.done == [(msg, "id-3")] and not outcome.dead
    failures.forget([msg])
    # Forgotten: a later failure of the same offset starts counting from one again.
    assert failures.add(msg, RuntimeError("again")).attempts == 1


def test_failures_are_counted_per_record() -> None:
    failures = Failures(2)
    first, other = record(1), record(1, partition=2)
    attempt([first], Processor(lambda _: True), failures)
    assert attempt([other], Processor(lambda _: True), failures).retry  # its own first failure
    assert attempt([first], Processor(lambda _: True), failures).dead  # the first's second


@pytest.mark.parametrize("failures", [1, 2, 5, 6, 7, 20])
def test_the_retry_pause_doubles_up_to_its_ceiling_with_jitter(failures: int) -> None:
    full = min(30.0, 0.5 * 2 ** (failures - 1))
    for _ in range(50):
        assert full / 2 <= retry_pause(failures) <= full


def test_the_retry_pause_control_a_constant_would_fail() -> None:
    """Control: the pauses drawn do vary (jitter), and grow with the failures."""
    drawn = {retry_pause(3) for _ in range(20)}
    assert len(drawn) > 1
    assert max(retry_pause(1) for _ in range(20)) < min(retry_pause(4) for _ in range(20))


class FakeWriter(dead_letters.DeadLetters):
    """DeadLetters with its Kafka write replaced by a script of answers: what send_all does
    around the writes is under test, not the producer."""

    def __init__(self, answers: list[bool]) -> None:
        self.topic, self.group, self.refused = "t.dlq", "g", 0
        self._acknowledged = set()
        self.answers, self.sent = answers, []

    def send(self, msg: Message, failure: attempts.Failure) -> bool:
        self.sent.append(msg.offset())
        return self.answers.pop(0)


def test_a_dead_letter_acknowledged_before_a_refused_one_is_not_written_again() -> None:
    dead = [(record(n), attempts.poison(MessageDecodeError("bad"))) for n in range(3)]
    writer = FakeWriter([True, False, True, True])
    assert not writer.send_all(dead)  # the second is refused: the batch comes again
    assert writer.sent == [0, 1] and writer.refused == 1
    assert writer.send_all(dead)  # after the rewind: the first is not written again
    assert writer.sent == [0, 1, 1, 2] and writer.refused == 0
    # Once all are acknowledged, nothing is remembered: a new batch is written in full.
    writer.answers = [True, True, True]
    assert writer.send_all(dead) and writer.sent[4:] == [0, 1, 2]


def test_nothing_to_dead_letter_is_all_acknowledged() -> None:
    writer = FakeWriter([])
    assert writer.send_all([]) and writer.sent == []


def test_the_producer_exit_status() -> None:
    assert producer.exit_status(0, False, None) == lifecycle.EXIT_OK
    assert producer.exit_status(1, False, None) == lifecycle.EXIT_FAILED  # one not acknowledged
    stopped_by = object()  # any Kafka error that stopped it
    assert producer.exit_status(0, False, stopped_by) == lifecycle.EXIT_FAILED
    assert producer.exit_status(0, True, None) == lifecycle.EXIT_CLIENT_STUCK  # stranded
    assert producer.exit_status(3, True, stopped_by) == lifecycle.EXIT_CLIENT_STUCK  # wins
    # A secured cluster refused its login or certificate: a setting to fix, as a bad flag is.
    assert producer.exit_status(3, False, None, refused=True) == lifecycle.EXIT_USAGE
    assert producer.exit_status(3, True, None, refused=True) == lifecycle.EXIT_CLIENT_STUCK
