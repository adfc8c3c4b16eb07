"""The consumer loops' Kafka side: a group member that subscribes, collects or polls, seeks
back, commits and closes. It owns the batch being collected and the partitions read a record at
a time, so its rebalance handlers change only its own state. kafka_app/attempts.py decides."""

import logging
import math
import threading
import time

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from kafka_app.client_health import ClientHealth
from kafka_app.commits import Commits
from kafka_app.lifecycle import (
    EXIT_CLIENT_STUCK,
    EXIT_FAILED,
    EXIT_USAGE,
    Heartbeat,
    RecordLog,
    counted,
)
from kafka_app.offsets import Offsets, format_offsets, next_offsets
from kafka_app.polling import POLL_TIMEOUT, log_assigned, log_consumer_error


class GroupMember:
    """``stop``: set by a signal; ``max_messages``, ``idle_exit``: when a loop is done (exit 0);
    ``processed_log``: a line per record committed past; ``group``: its id, for error lines."""

    def __init__(
        self,
        consumer: Consumer,
        stop: threading.Event,
        health: ClientHealth,
        max_messages: int | None = None,
        idle_exit: float | None = None,
        processed_log: RecordLog | None = None,
        group: str = "",
    ) -> None:
        self.consumer, self.stop, self.health = consumer, stop, health
        self.max_messages, self.idle_exit = max_messages, idle_exit
        self.processed_log = processed_log or RecordLog(None)
        self.group = group  # for the line of a refused group (kafka_app/refusals)
        self.commits = Commits(consumer)  # a failed commit is kept, retried, merged into the next
        self.heartbeat = Heartbeat()  # /healthz: a poll is a turn of the loop
        self.processed = 0  # records processed or dead-lettered, and committed past
        self.last_record_at = time.monotonic()
        self.one_at_a_time: Offsets = {}  # after a batch failed: a record at a time, up to these
        self._collected: list[Message] = []  # the batch being collected
        self._window_ends = math.inf  # opened by the batch's first record

    def subscribe(self, topic: str) -> None:
        handlers = {"on_assign": log_assigned, "on_revoke": self.on_revoke, "on_lost": self.on_lost}
        self.consumer.subscribe([topic], **handlers)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Inside consume() or poll(): what was collected is left to the next owner."""
        self.commits.partitions_revoked(partitions, dropped=self._forget(partitions))

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Someone else's already: nothing of them can be committed any more."""
        self.commits.partitions_lost(partitions, dropped=self._forget(partitions))

    def _forget(self, partitions: list[TopicPartition]) -> int:
        """Drop what is collected from ``partitions``; return how many records that was."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        for key in gone:
            self.one_at_a_time.pop(key, None)
        kept = [msg for msg in self._collected if (msg.topic(), msg.partition()) not in gone]
        dropped, self._collected = len(self._collected) - len(kept), kept
        if not kept:
            self._window_ends = math.inf
        return dropped

    def should_stop(self) -> bool:
        """True, with a line saying why (a broken client has said so already), when to stop."""
        if self.stop.is_set():
            logging.info("Shutdown requested (a second Ctrl-C or SIGTERM aborts at once)")
        elif self.max_messages is not None and self.processed >= self.max_messages:
            done = counted(self.processed, "message")
            logging.info(f"Processed {done} (--max-messages): exiting")
        elif self._idle():
            logging.info(f"Nothing new for {self.idle_exit:g} s (--idle-exit): exiting")
        else:
            return self.health.broken
        return True

    def _idle(self) -> bool:
        since = time.monotonic() - self.last_record_at
        return self.idle_exit is not None and since >= self.idle_exit

    def _interrupted(self) -> bool:
        self.heartbeat.beat()
        return self.stop.is_set() or self.health.broken or self._idle()

    def collect(self, most: int, window: float) -> list[Message]:
        """Consume until ``most`` records came (one after a failed batch, fewer if nearer to
        --max-messages), ``window`` s passed since the first, or a stop; none if the client
        broke: it could never commit them. consume() returns ~200 ms after a first record."""
        most = 1 if self.one_at_a_time else most
        if self.max_messages is not None:
            most = min(most, self.max_messages - self.processed)
        while len(self._collected) < most and not self._interrupted():
            timeout = min(self._window_ends - time.monotonic(), POLL_TIMEOUT)
            if timeout <= 0:
                break
            for msg in self.consumer.consume(
                num_messages=most - len(self._collected), timeout=timeout
            ):
                if self._is_record(msg):
                    self._collected.append(msg)
                    self._window_ends = min(self._window_ends, self.last_record_at + window)
        batch, self._collected, self._window_ends = self._collected, [], math.inf
        return [] if self.health.broken else batch

    def poll(self) -> Message | None:
        """The next record; None if none came in POLL_TIMEOUT, an error did, or the client broke."""
        self.heartbeat.beat()
        msg = self.consumer.poll(POLL_TIMEOUT)
        if msg is None or self.health.broken:
            return None
        return msg if self._is_record(msg) else None

    def _is_record(self, msg: Message) -> bool:
        """False for an error that consume() or poll() returned instead of a record (logged)."""
        if msg.error():
            log_consumer_error(msg, self.health.principal, self.group)
            return False
        self.last_record_at = time.monotonic()
        return True

    def seek_back(self, batch: list[Message], pause: float, one_at_a_time: bool = False) -> None:
        """Seek each partition back to its first record in ``batch``, so that these come again
        (one at a time until past them, if asked), then wait ``pause`` s (a stop ends it)."""
        if one_at_a_time:
            for key, offset in next_offsets(batch).items():
                self.one_at_a_time[key] = max(offset, self.one_at_a_time.get(key, -1))
        first: dict[tuple[str, int], int] = {}
        for msg in batch:
            first.setdefault((msg.topic(), msg.partition()), msg.offset())
        for (topic, partition), offset in first.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # say, the partition is no longer ours
                logging.warning("Could not rewind %s [%d] to %d: %s", topic, partition, offset, exc)
        self.stop.wait(pause)

    def commit(self, done: list[tuple[Message, str | None]]) -> Offsets:
        """Commit past ``done`` (records with their message ids, None: a dead letter); return
        what was committed: none if it failed (it is retried, merged into the next commit)."""
        if self.processed_log.enabled:
            for msg, message_id in done:
                self.processed_log.write(msg.partition(), msg.offset(), message_id)
        committed = self.commits.commit(next_offsets(msg for msg, _ in done))
        for key, offset in committed.items():  # past the failed batch: whole batches again
            if offset >= self.one_at_a_time.get(key, offset + 1):
                del self.one_at_a_time[key]
        self.processed += len(done)
        return committed

    def retry_failed_commit(self) -> None:
        self.commits.retry_if_due()

    def close(self, status: int) -> int:
        """Leave the group; return the exit status, 0 only if all processed is committed.
        close() revokes every partition, so on_revoke makes a last try for a failed commit."""
        self.commits.not_committed.clear()  # earlier revocations': their new owners re-read them
        if self.health.stranded:  # no broker to commit to
            status = EXIT_CLIENT_STUCK
            self.commits.abandon()
        elif self.health.fatal_error is not None:
            status = EXIT_FAILED
        elif self.health.refused is not None:
            status = EXIT_USAGE
        logging.info("Closing the consumer (commits, leaves the group; ~1 min if no broker is up)")
        self.consumer.close()
        self.processed_log.close()
        if left := self.commits.not_committed:
            logging.error(f"Processed, not committed, to be redelivered: {format_offsets(left)}")
            status = status or EXIT_FAILED
        logging.info(f"Stopped after processing {counted(self.processed, 'message')}")
        return status
