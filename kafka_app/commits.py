"""Synchronous commits of explicit offsets, bounded in time; a failed one is kept and retried
until it succeeds, its partitions are revoked (a last try) or lost (dropped)."""

import faulthandler
import logging
import math
import os
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kafka_app.latency import LatencyHistogram
from kafka_app.lifecycle import EXIT_CLIENT_STUCK
from kafka_app.offsets import Offsets, format_offsets, format_partitions

# A commit takes milliseconds, or as long as the group coordinator is away (RELIABILITY.md):
# up to 45 s behind a rebalance, longer in a cluster restart, for ever for a stranded client.
# Past this bound only a restart helps; it re-delivers what was not committed.
COMMIT_TIMEOUT_SECONDS = 120.0
COMMIT_RETRY_SECONDS = 2.0  # a failed commit is retried this often even when no record comes
# A commit made while the group rebalances is refused with one of these: routine, not an error.
_REBALANCE_ERRORS = (
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.UNKNOWN_MEMBER_ID,
)


class CommitStats:
    """This process's commits, for kafka_app/metrics.py and the liveness probe."""

    def __init__(self) -> None:
        self.ok = self.failed = 0
        self.latency = LatencyHistogram()
        self.running_since: float | None = None  # when the commit in progress began


STATS = CommitStats()


def commit_offsets(consumer: Any, offsets: Offsets) -> Offsets:
    """Commit ``offsets`` synchronously; return those that failed, logged, for a retry; raise a
    fatal error. It runs on the calling thread, maybe in on_revoke inside poll()."""
    if not offsets:
        return {}  # committing nothing would raise _NO_OFFSET
    request = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
    if _bound.ident is None:
        _bound.start()
    STATS.running_since = started = time.monotonic()
    _bound.offsets, _bound.deadline = offsets, started + COMMIT_TIMEOUT_SECONDS
    try:
        result = consumer.commit(offsets=request, asynchronous=False)
    except KafkaException as exc:
        error = exc.args[0]
        if isinstance(error, KafkaError) and error.fatal():
            raise
        _log_failure(format_offsets(offsets), error)
        STATS.failed += 1
        return dict(offsets)
    finally:
        _bound.deadline = math.inf
        STATS.running_since = None
        STATS.latency.observe(time.monotonic() - started)
    failed = {}
    for tp in result or []:
        if tp.error is not None:
            failed[(tp.topic, tp.partition)] = offsets[(tp.topic, tp.partition)]
            _log_failure(f"{tp.topic} [{tp.partition}]@{tp.offset}", tp.error)
    STATS.failed += bool(failed)
    STATS.ok += not failed
    return failed


def _log_failure(what: str, error: Any) -> None:
    if isinstance(error, KafkaError) and error.code() in _REBALANCE_ERRORS:
        logging.warning("Commit of %s refused during a rebalance (%s); will retry", what, error)
    else:
        logging.error("Commit of %s failed: %s", what, error)


class Commits:
    """A consumer's commits: the offsets of a failed commit are kept for the next one."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.pending: Offsets = {}  # processed, but their commit failed: retried
        self.not_committed: Offsets = {}  # given up on: their next owner re-reads them
        self._retry_at = 0.0

    def commit(self, offsets: Offsets) -> Offsets:
        """Commit ``offsets`` and pending ones (the higher per partition); return the committed."""
        for key, offset in offsets.items():
            self.pending[key] = max(offset, self.pending.get(key, -1))
        to_commit = self.pending
        self.pending = commit_offsets(self.consumer, to_commit)
        self._retry_at = time.monotonic() + COMMIT_RETRY_SECONDS
        return {tp: o for tp, o in to_commit.items() if tp not in self.pending}

    def retry_if_due(self) -> None:
        if self.pending and time.monotonic() >= self._retry_at and (committed := self.commit({})):
            logging.info("Committed %s (retry)", format_offsets(committed))

    def partitions_revoked(self, partitions: list[TopicPartition], dropped: int = 0) -> None:
        """In on_revoke: a last try for what a failed commit left in these partitions."""
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        last_chance = {tp: o for tp, o in self.pending.items() if tp in revoked}
        self.not_committed.update(commit_offsets(self.consumer, last_chance))
        self.pending = {tp: o for tp, o in self.pending.items() if tp not in revoked}
        note = f" ({dropped} collected messages left to the next owner)" if dropped else ""
        logging.info(f"Partitions revoked: {format_partitions(partitions)}{note}")

    def partitions_lost(self, partitions: list[TopicPartition], dropped: int = 0) -> None:
        """In on_lost: the partitions are someone else's, nothing of them can be committed."""
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self.pending = {tp: o for tp, o in self.pending.items() if tp not in lost}
        note = f"; {dropped} collected ones dropped" if dropped else ""
        again = f"uncommitted messages will be redelivered{note}"
        logging.warning(f"Partitions lost: {format_partitions(partitions)} ({again})")

    def abandon(self) -> None:
        """With no broker to commit to, give up on what is pending."""
        self.not_committed.update(self.pending)
        self.pending = {}


class _CommitBound(threading.Thread):
    """Ends the process when a commit outlasts COMMIT_TIMEOUT_SECONDS: commit() takes no
    timeout, and nothing unsticks a client stuck in it. One thread checks the deadline each
    commit sets; a timer per commit (faulthandler's exits 1, not 3) costs 60 to 120 µs."""

    def __init__(self) -> None:
        super().__init__(name="commit-bound", daemon=True)
        self.deadline, self.offsets = math.inf, {}

    def run(self) -> None:
        while True:
            time.sleep(min(1.0, COMMIT_TIMEOUT_SECONDS / 10))
            if time.monotonic() > self.deadline:
                self.deadline = math.inf
                logging.critical(
                    f"Commit of {format_offsets(self.offsets)} did not complete in"
                    f" {COMMIT_TIMEOUT_SECONDS:.0f} s: the Kafka client is stuck; exiting"
                    f" {EXIT_CLIENT_STUCK}, for a restart (uncommitted messages come again)"
                )
                faulthandler.dump_traceback(all_threads=True)  # where each thread was stuck
                os._exit(EXIT_CLIENT_STUCK)


_bound = _CommitBound()
