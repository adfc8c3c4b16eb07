"""One attempt at a batch: decode, process, and decide with no Kafka call whether its records
are done (dead letters written, then committed past) or must come again (after a pause, or a
record at a time to find the failing one). README.md, "Dead letters", tells it in prose."""

import dataclasses
import logging
import random
import time
from collections.abc import Callable

from confluent_kafka import Message

from message_model import MessageDecodeError, MessageModel


@dataclasses.dataclass
class Failure:
    """How processing one record has failed so far."""

    error: BaseException
    attempts: int
    first_at: float  # time.time()
    last_at: float


def poison(error: BaseException) -> Failure:
    """A record that can never be processed: one attempt, the decoding."""
    now = time.time()
    return Failure(error, 1, now, now)


class Failures:
    """Failed processing attempts per record, until it is processed or dead-lettered."""

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts
        self._failures: dict[tuple[str, int, int], Failure] = {}

    def add(self, msg: Message, error: BaseException) -> Failure:
        """Count one more failed attempt at ``msg``; return its failures so far."""
        now, key = time.time(), (msg.topic(), msg.partition(), msg.offset())
        failure = self._failures.setdefault(key, Failure(error, 0, now, now))
        failure.error, failure.attempts, failure.last_at = error, failure.attempts + 1, now
        return failure

    def forget(self, messages: list[Message]) -> None:
        """Processed or dead-lettered: these will not be tried again."""
        if self._failures:  # empty unless something failed: the usual case costs this test
            for msg in messages:
                self._failures.pop((msg.topic(), msg.partition(), msg.offset()), None)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What follows an attempt: rewind to the batch, or write the dead letters, then commit."""

    retry: bool = False  # rewind, then wait ``pause`` seconds; if ``split``, a record at a time
    pause: float = 0.0
    split: bool = False
    dead: list[tuple[Message, Failure]] = dataclasses.field(default_factory=list)
    # What to commit past, each record with its message id (None: a dead letter) to log.
    done: list[tuple[Message, str | None]] = dataclasses.field(default_factory=list)


def decode(msg: Message) -> MessageModel | MessageDecodeError:
    """The record's MessageModel, or the error of a poison one (a tombstone, or bytes that are
    not a MessageModel): it will never become valid, so it goes to the dead letters."""
    try:
        if (value := msg.value()) is None:
            raise MessageDecodeError("tombstone (value is null)")
        return MessageModel.deserialize(value)
    except MessageDecodeError as exc:
        return exc


def attempt(
    batch: list[Message], process: Callable[[list[MessageModel]], None], failures: Failures
) -> Outcome:
    """Process the batch's records (poison ones become dead letters at once) and decide."""
    pairs = [(msg, decode(msg)) for msg in batch]
    good = [(msg, record) for msg, record in pairs if isinstance(record, MessageModel)]
    dead = [(msg, poison(record)) for msg, record in pairs if isinstance(record, Exception)]
    try:
        if good:
            process([record for _, record in good])
    except Exception as exc:
        return after_failure(pairs, good, dead, exc, failures)
    return Outcome(dead=dead, done=[(msg, message_id(record)) for msg, record in pairs])


def message_id(record: MessageModel | MessageDecodeError) -> str | None:
    """What the processed log writes for a record: None for a poison one."""
    return record.message_id if isinstance(record, MessageModel) else None


def after_failure(pairs: list, good: list, dead: list, error: Exception, failures: Failures):
    """Inside the ``except``: split a failed batch to find the failing record; retry a single
    one after a growing pause, or dead-letter it once exhausted."""
    if len(good) > 1:
        logging.exception(f"Processing a batch of {len(good)} messages failed; trying each alone")
        return Outcome(retry=True, split=True)
    msg = good[0][0]
    failure = failures.add(msg, error)
    where = f"{msg.topic()} [{msg.partition()}] @ {msg.offset()}"
    of = f"attempt {failure.attempts} of {failures.max_attempts}"
    logging.exception(f"Processing {where} failed ({of})")
    if failure.attempts < failures.max_attempts:
        return Outcome(retry=True, pause=retry_pause(failure.attempts))
    return Outcome(dead=[*dead, (msg, failure)], done=[(msg, None) for msg, _ in pairs])


def retry_pause(failures: int, first: float = 0.5, most: float = 30.0) -> float:
    """The pause after the n-th failure in a row: doubling from ``first`` up to ``most``, with
    jitter (half to all of it), so that replicas that failed together do not retry together."""
    return min(most, first * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
