"""What both at-least-once consumers share: the life cycle around their own work.

batch_message_consumer.py and single_message_consumer.py differ in how much they process
before one commit (a batch, or one message). The rest is the same and lives here:

- subscribe with rebalance callbacks: on revocation, retry a failed commit while the
  partitions are still ours; on loss, forget it (their next owner gets the messages again);
- when to stop: SIGTERM/SIGINT, a fatal client error, a client stranded with no broker
  (exit status 3, for a restart: see app_config.ErrorReporter), ``--max-messages``,
  ``--idle-exit``;
- commits of explicit offsets, a failed one kept and merged into the next;
- after a processing failure, seek back so that the same messages come again, with a backoff;
- on the way out: close(), which revokes every partition (so on_revoke commits what a failed
  commit left) and leaves the group; then the exit status.

A subclass implements :meth:`step` (one round of poll, process, commit) and, if it holds
messages between polls, :meth:`forget`.
"""

from __future__ import annotations

import logging
import time
from threading import Event
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

import app_config

POLL_TIMEOUT = 0.5  # longest blocking call, so a shutdown request is noticed quickly
MIN_BACKOFF = 0.5  # after a processing failure; doubles on each failure in a row
MAX_BACKOFF = 30.0
# A failed commit (say, ILLEGAL_GENERATION while a rebalance is under way) is retried between
# polls this often, not only with the next batch: an idle consumer would hold it until it stops.
COMMIT_RETRY_SECONDS = 2.0


def create_consumer(args: Any, errors: app_config.ErrorReporter) -> Consumer:
    """The Consumer the parsed flags describe; a bad setting exits with one line (status 2)."""
    with app_config.exit_on_config_error():
        return Consumer(
            app_config.consumer_config(
                args.bootstrap_servers, args.group_id, args.client_properties, errors
            )
        )


def options_from(args: Any, stop: Event, errors: app_config.ErrorReporter) -> dict[str, Any]:
    """The :class:`CommittingConsumer` options that come from the flags both consumers take."""
    return {
        "stop": stop,
        "max_messages": args.max_messages,
        "idle_exit": args.idle_exit,
        "processed_log": app_config.RecordLog(args.processed_log),
        "errors": errors,
    }


class CommittingConsumer:
    """Runs ``step()`` until told to stop, on a Consumer it owns (and closes)."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        *,
        stop: Event | None = None,
        max_messages: int | None = None,
        idle_exit: float | None = None,
        processed_log: app_config.RecordLog | None = None,
        errors: app_config.ErrorReporter | None = None,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.stop = stop or Event()
        self.max_messages = max_messages
        self.idle_exit = idle_exit
        self.processed_log = processed_log or app_config.RecordLog(None)
        self.errors = errors or app_config.ErrorReporter()
        self.uncommitted: app_config.Offsets = {}  # processed, commit failed: retried
        self.not_committed: app_config.Offsets = {}  # given up on when partitions were revoked
        self.processed = 0  # records processed and committed (poison records included)
        self.backoff = MIN_BACKOFF
        self.last_record_at = time.monotonic()
        self.retry_commit_at = 0.0

    def step(self) -> None:
        """One round of the loop: poll, process, commit."""
        raise NotImplementedError

    def forget(self, partitions: list[TopicPartition]) -> int:
        """Drop messages held for these partitions (revoked or lost); return how many."""
        return 0

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        """Consume until stopped; return the exit status (0 = clean stop)."""
        self.consumer.subscribe(
            [self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost
        )
        status = 0
        try:
            while not self.should_stop():
                self.step()
                if self.uncommitted:
                    self.retry_commit()
        except KafkaException as exc:
            logging.error("Stopping after a fatal Kafka error: %s", exc)
            status = 1
        finally:
            self.not_committed = {}
            if self.errors.stranded:
                # No broker to commit to: what a failed commit left is not tried in on_revoke.
                status = app_config.EXIT_CLIENT_STUCK
                self.not_committed, self.uncommitted = self.uncommitted, {}
            elif self.errors.fatal_error is not None:
                status = 1
            # No commit of our own here: close() revokes every partition, and on_revoke commits
            # what a failed commit left, inside the rebalance protocol where librdkafka expects
            # commits. (test_apps once saw a commit made here, after an ILLEGAL_GENERATION in a
            # rebalance, never answer.)
            logging.info(
                "Closing the consumer (commits what is left and leaves the group; up to ~1 min"
                " if no broker is reachable)"
            )
            self.consumer.close()
            self.processed_log.close()
            if self.not_committed:
                logging.error(
                    "Processed offsets not committed (%s): they will be delivered again to the"
                    " next owner of their partitions",
                    app_config.format_offsets(self.not_committed),
                )
                status = status or 1
        logging.info("Stopped after processing %d messages", self.processed)
        return status

    def should_stop(self) -> bool:
        if self.stop.is_set():
            logging.info("Shutdown requested")
            return True
        if self.errors.broken:  # a fatal error, or stranded: both logged already
            return True
        if self.max_messages is not None and self.processed >= self.max_messages:
            logging.info("Processed %d messages (--max-messages): exiting", self.processed)
            return True
        if self.idle():
            logging.info("Nothing new for %g s (--idle-exit): exiting", self.idle_exit)
            return True
        return False

    def idle(self) -> bool:
        return (
            self.idle_exit is not None and time.monotonic() - self.last_record_at >= self.idle_exit
        )

    # -- commits and failures ----------------------------------------------------------------

    def commit(self, offsets: app_config.Offsets) -> app_config.Offsets:
        """Synchronously commit `offsets`, with any left over from a failed commit; return
        those committed now. What fails stays in ``self.uncommitted`` for the next commit."""
        app_config.merge_offsets(self.uncommitted, offsets)
        to_commit = self.uncommitted
        self.uncommitted = app_config.commit_offsets(self.consumer, to_commit)
        if self.uncommitted:
            self.retry_commit_at = time.monotonic() + COMMIT_RETRY_SECONDS
        return {tp: o for tp, o in to_commit.items() if tp not in self.uncommitted}

    def retry_commit(self) -> None:
        if time.monotonic() < self.retry_commit_at:
            return
        committed = self.commit({})
        if committed:
            logging.info("Committed %s (retry)", app_config.format_offsets(committed))

    def redeliver(self, messages: list[Message]) -> None:
        """After a processing failure: seek each partition back to its first message here, so
        that exactly these come again, after a backoff that doubles on each failure in a row.

        (Not committing alone does not redeliver: the position has already moved on.)
        """
        first: dict[tuple[str, int], int] = {}
        for msg in messages:
            first.setdefault((msg.topic(), msg.partition()), msg.offset())
        for (topic, partition), offset in first.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # e.g. the partition is no longer ours
                logging.warning("Could not rewind %s [%d] to %d: %s", topic, partition, offset, exc)
        self.stop.wait(self.backoff)
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    # -- rebalances (called inside poll() and consume()) --------------------------------------

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        level = logging.INFO if partitions else logging.DEBUG  # cooperative: may be empty
        logging.log(level, "Partitions assigned: %s", app_config.format_partitions(partitions))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Give partitions back: everything processed is committed by now (or just now)."""
        dropped = self.forget(partitions)
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        pending = {tp: o for tp, o in self.uncommitted.items() if tp in revoked}
        if pending:  # an earlier commit failed: last chance while they are still ours
            self.not_committed.update(app_config.commit_offsets(consumer, pending))
            for tp in pending:
                self.uncommitted.pop(tp)
        logging.info(
            "Partitions revoked: %s%s",
            app_config.format_partitions(partitions),
            f" ({dropped} collected, unprocessed messages dropped: the next owner reads them,"
            " as they are not committed)"
            if dropped
            else "",
        )

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions already belong to someone else: committing is no longer possible."""
        dropped = self.forget(partitions)
        for tp in partitions:
            self.uncommitted.pop((tp.topic, tp.partition), None)
        logging.warning(
            "Partitions lost: %s (uncommitted messages will be redelivered%s)",
            app_config.format_partitions(partitions),
            f"; {dropped} collected, unprocessed messages dropped" if dropped else "",
        )
