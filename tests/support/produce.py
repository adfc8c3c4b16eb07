"""Writing records the apps would never write (any bytes, empty and null values, odd headers).

The writer need not be independent of the code under test; the reader that checks what was
written is (:func:`support.witness.witness_read`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# partition, key, value, headers
RawRecord = tuple[int, bytes | None, bytes | None, Iterable[bytes]]


def produce_raw(
    bootstrap: str, topic: str, records: Iterable[RawRecord], timeout: float = 60
) -> None:
    """Writes records exactly as given, in order, each to its partition: any bytes, an empty
    value, or None for a null value (a tombstone). Headers are ``name=value`` (``name`` alone
    for a null value) with any bytes as the value.

    An idempotent confluent-kafka Producer, in-process: the writer need not be independent of
    the code under test, only the reader (:func:`witness_read`) that checks what was written.
    Idempotence keeps each partition's order through retries. Fails unless every record was
    acknowledged.
    """
    from confluent_kafka import Producer

    failed: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failed.append(f"[{message.partition()}] {error}")

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    sent = 0
    for partition, key, value, headers in records:
        pairs = []
        for header in headers:
            name, has_value, data = header.partition(b"=")
            pairs.append((name.decode(), data if has_value else None))
        producer.produce(
            topic, value, key, partition=partition, headers=pairs, on_delivery=delivered
        )
        producer.poll(0)
        sent += 1
    left = producer.flush(timeout)
    if left or failed:
        raise AssertionError(
            f"{sent - left - len(failed)} of {sent} records acknowledged in {topic};"
            f" {left} not delivered within {timeout:.0f} s; failed: {failed}"
        )
