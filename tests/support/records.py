"""The apps' own records (acknowledged, processed, the producer's summary) and the topic's.

:class:`TopicContent` and :class:`TopicIndex` hold what the witness found in a topic
(:func:`support.witness.witness_read`) and say which acknowledged records it lacks.
"""

from __future__ import annotations

import array
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer

from .witness import witness_read

Record = tuple[int, int, str]  # partition, offset, message id ("-" for a poison record)


def read_records(path: Path) -> list[Record]:
    """The lines ``<partition> <offset> <message id>`` of a --delivered-log / --processed-log."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        partition, offset, message_id = line.split(" ")
        records.append((int(partition), int(offset), message_id))
    return records


SUMMARY = re.compile(
    r"Sent (\d+), delivered (\d+), failed (\d+), not delivered \(still queued\) (\d+)"
)


def producer_summary(log: str) -> dict[str, int]:
    """The producer's last line: sent, delivered, failed, undelivered."""
    found = SUMMARY.findall(log)
    if not found:
        raise AssertionError("no 'Sent N, delivered N, ...' summary in the producer log")
    names = ("sent", "delivered", "failed", "undelivered")
    return dict(zip(names, map(int, found[-1]), strict=True))


@dataclass
class TopicContent:
    """What the witness found in a topic: the key at each (partition, offset), decoded as UTF-8
    (undecodable bytes kept as surrogates; None for a null key)."""

    keys: dict[tuple[int, int], str | None]

    @classmethod
    def read(cls, bootstrap: str, topic: str) -> TopicContent:
        keys = {}
        for partition, offset, key, _ in witness_read(bootstrap, topic, values=False):
            text = None if key is None else key.decode("utf-8", "surrogateescape")
            keys[(partition, offset)] = text
        return cls(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def duplicates(self) -> int:
        """Records whose key (the producer's message id) is in the topic more than once."""
        return sum(n - 1 for n in Counter(self.keys.values()).values() if n > 1)

    def missing(self, acked: Iterable[Record]) -> list[Record]:
        """Acknowledged records not at the partition and offset their ack reported (or, for
        an ack without offset, -1, not in the partition at all)."""
        by_partition: dict[int, set[str]] = {}
        for (p, _), key in self.keys.items():
            by_partition.setdefault(p, set()).add(key)
        return [
            r
            for r in acked
            if (
                r[2] not in by_partition.get(r[0], ()) if r[1] < 0 else self.keys.get(r[:2]) != r[2]
            )
        ]


class TopicIndex:
    """What the witness finds in a big topic, in little memory: per partition, the hash of the
    key at each offset (8 bytes a record instead of ~150 for a dict entry).

    For millions of records: they stream from :func:`witness_read` (keys only). Two different
    keys have the same 64-bit hash with a probability of 2**-64, so "the acknowledged key is
    at its offset" stays a real check.
    """

    def __init__(self, bootstrap: str, topic: str, timeout: float = 300) -> None:
        self.hashes: dict[int, array.array] = {}
        self.count = 0
        self.offset_unknown = 0  # set by check()
        # Offsets without a record: those before the first offset, if retention ever deleted
        # the log's start (none expected here). The witness fails on gaps after it.
        self.gaps = 0
        started = time.monotonic()
        for partition, offset, key, _ in witness_read(bootstrap, topic, False, timeout):
            hashes = self.hashes.get(partition)
            if hashes is None:
                hashes = self.hashes[partition] = array.array("q")
            gap = offset - len(hashes)
            if gap > 0:
                hashes.extend([0] * gap)
                self.gaps += gap
            hashes.append(hash(key))  # a null key's hash is not an empty key's
            self.count += 1
        self.read_s = time.monotonic() - started

    def __len__(self) -> int:
        return self.count

    def duplicates(self) -> int:
        """Records whose key is in the topic more than once (idempotence should make it 0)."""
        distinct = set()
        for hashes in self.hashes.values():
            distinct.update(hashes)
        if self.gaps:
            distinct.discard(0)
        return self.count - len(distinct)

    def check(self, acked_logs: Iterable[Path]) -> tuple[int, list[str]]:
        """Reads --delivered-log files; returns (acknowledged, those not in the topic).

        An acknowledged record must be at the offset its ack gave; an offset of -1 (ack of
        a retry the broker had already written, offset not reported) must be in its
        partition. ``self.offset_unknown`` counts those.
        """
        acked, missing = 0, []
        self.offset_unknown = 0
        for path in acked_logs:
            with path.open("rb") as f:
                for line in f:
                    partition, offset, key = line.rstrip(b"\n").split(b" ", 2)
                    acked += 1
                    hashes = self.hashes.get(int(partition), array.array("q"))
                    o = int(offset)
                    if o < 0:
                        self.offset_unknown += 1
                        found = hash(key) in hashes
                    else:
                        found = o < len(hashes) and hashes[o] == hash(key)
                    if not found:
                        missing.append(line.decode().strip())
        return acked, missing


def fresh_reader(bootstrap: str) -> Consumer:
    """A consumer in a group of its own that starts at the beginning and commits nothing."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
