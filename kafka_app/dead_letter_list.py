"""``python dead_letters.py list``: a line per dead letter, with where it came from, why, when,
and how often a redrive has republished it."""

import collections
import contextlib
import datetime
import logging
import threading

from confluent_kafka import Consumer, KafkaException, Message

from kafka_app import dead_letters
from kafka_app.client_health import ClientHealth
from kafka_app.dead_letters import (
    ATTEMPTS,
    EXCEPTION_CLASS,
    EXCEPTION_MESSAGE,
    FIRST_FAILURE,
    LAST_FAILURE,
    ORIGINAL_GROUP,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
    REDRIVEN_FROM,
)
from kafka_app.lifecycle import EXIT_CLIENT_STUCK, EXIT_FAILED, EXIT_OK, counted
from kafka_app.topic_reading import Stopped, partitions_of, read_to_end, require_dlq_topic


def utc(milliseconds: str | None) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(int(milliseconds or "") / 1000, datetime.UTC)
    except (ValueError, OverflowError, OSError):
        return "?"
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def describe(dead_letter: Message, redrives: int | None) -> str:
    """A dead letter in one line."""
    why = dead_letters.read(dead_letter)
    error = " ".join(why.get(EXCEPTION_MESSAGE, "?").split())  # one line, whatever it holds
    origin = (why.get(ORIGINAL_TOPIC, "?"), why.get(ORIGINAL_PARTITION, "?"))
    when = f"{utc(why.get(FIRST_FAILURE))} to {utc(why.get(LAST_FAILURE))}"
    redriven = "redriven ?" if redrives is None else f"redriven {counted(redrives, 'time')}"
    return (
        f"{dead_letter.topic()} [{dead_letter.partition()}] @ {dead_letter.offset()}:"
        f" from {origin[0]} [{origin[1]}] @ {why.get(ORIGINAL_OFFSET, '?')};"
        f" {why.get(EXCEPTION_CLASS, '?')}: {error}; {why.get(ATTEMPTS, '?')} attempt(s),"
        f" failed {when}; group {why.get(ORIGINAL_GROUP, '?')}; {redriven}"
    )


def redrives_in(
    consumer: Consumer, topics: set[str], stop: threading.Event, health: ClientHealth
) -> dict[str, collections.Counter]:
    """Per original topic, how many records carry each kafka_dlt-redriven-from value (missing:
    the topic does not exist)."""
    found = {}
    for topic in sorted(topics):
        if (partitions := partitions_of(consumer, topic)) is None:
            logging.warning("Original topic %s does not exist: its redrives are unknown", topic)
            continue
        logging.info("Reading %s for records redriven before", topic)
        found[topic] = count = collections.Counter()
        for msg in read_to_end(consumer, topic, partitions, stop, health):
            for name, value in msg.headers() or []:
                if name == REDRIVEN_FROM:
                    count[(value or b"").decode(errors="replace")] += 1
    return found


def list_dead_letters(
    consumer: Consumer, topic: str, most: int | None, stop: threading.Event, health: ClientHealth
) -> int:
    partitions = require_dlq_topic(consumer, topic)
    found: list[Message] = []
    try:
        with contextlib.closing(read_to_end(consumer, topic, partitions, stop, health)) as read:
            for msg in read:
                found.append(msg)
                if most is not None and len(found) >= most:
                    break
        origins = {why.get(ORIGINAL_TOPIC) for why in map(dead_letters.read, found)} - {None}
        redrives = redrives_in(consumer, origins, stop, health)
    except Stopped:
        if health.broken:  # it has said why
            return EXIT_CLIENT_STUCK if health.stranded else EXIT_FAILED
        logging.info("Shutdown requested: the list is incomplete")
        redrives = {}
    except (KafkaException, TimeoutError) as exc:
        if isinstance(exc, KafkaException):
            logging.error("Cannot read %s: %s", topic, exc.args[0].str())
        return EXIT_CLIENT_STUCK if health.stranded else EXIT_FAILED
    finally:
        consumer.close()  # commits nothing: auto-commit is off
    for msg in found:
        origin = dead_letters.read(msg).get(ORIGINAL_TOPIC, "")
        count = redrives[origin][dead_letters.redriven_from(msg)] if origin in redrives else None
        print(describe(msg, count))
    if found:
        limit = f" (the first {most}: --max)" if len(found) == most else ""
        print(f"{counted(len(found), 'dead letter')} in {topic}{limit}")
    else:
        print(f"No dead letters in {topic}")
    return EXIT_OK
