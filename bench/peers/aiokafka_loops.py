"""Bench worker: the app's loops written with aiokafka (asyncio client).

``python -m bench.peers.aiokafka_loops CASE --bootstrap B --topic T --messages N``
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from bench.common import (
    BATCH_SIZE,
    LINGER_MS,
    PLAIN_POLL,
    Stopwatch,
    emit,
    profiled,
    rate,
    worker_parser,
)
from bench.peers import first_assignment_listener, make_message
from message_model import MessageModel


async def run_producer(args) -> dict:
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=LINGER_MS,
        compression_type="lz4",
    )
    await producer.start()
    counts = {"delivered": 0, "failed": 0}

    def on_delivery(future: asyncio.Future) -> None:  # the delivery callback
        if future.exception() is None:
            counts["delivered"] += 1
        else:
            counts["failed"] += 1

    try:
        with profiled(args.profile):
            started = time.perf_counter()
            for n in range(1, args.messages + 1):
                key, value = make_message(n)
                future = await producer.send(args.topic, value=value, key=key)
                future.add_done_callback(on_delivery)
            await producer.flush()
            await asyncio.sleep(0)  # let the last done-callbacks run
            seconds = time.perf_counter() - started
    finally:
        await producer.stop()
    if counts["delivered"] != args.messages:
        raise SystemExit(f"aiokafka delivered {counts}")
    return rate(args.messages, seconds)


async def run_consumer(args, max_records: int, commit: bool) -> dict:
    """getmany(max_records) -> decode each record -> one synchronous commit per call."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
    )
    watch = Stopwatch()
    consumer.subscribe(
        [args.topic], listener=first_assignment_listener(ConsumerRebalanceListener, watch)
    )
    await consumer.start()
    count = 0
    try:
        with profiled(args.profile):
            while count < args.messages:
                records = await consumer.getmany(timeout_ms=500, max_records=max_records)
                if not records:
                    continue
                offsets = {}
                for tp, batch in records.items():
                    for record in batch:
                        MessageModel.deserialize(record.value)
                    count += len(batch)
                    offsets[tp] = batch[-1].offset + 1
                if commit:
                    await consumer.commit(offsets)
            watch.mark_end()
    finally:
        await consumer.stop()
    return rate(count, watch.seconds)


async def amain(args) -> dict:
    if args.case == "producer":
        return await run_producer(args)
    if args.case == "batch":
        return await run_consumer(args, BATCH_SIZE, commit=True)
    if args.case == "single":
        return await run_consumer(args, 1, commit=True)
    if args.case == "plain":
        return await run_consumer(args, PLAIN_POLL, commit=False)
    raise SystemExit("no latency loop for aiokafka")


def main() -> int:
    args = worker_parser(__doc__.splitlines()[0]).parse_args()
    logging.basicConfig(level=logging.ERROR)
    emit(**asyncio.run(amain(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
