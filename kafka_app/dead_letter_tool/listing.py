"""``python dead_letters.py list``: a line per dead letter, with where it came from, why, when,
and how often a redrive has republished it."""

import collections
import contextlib
import datetime
import itertools
import logging
import threading

from confluent_kafka import Consumer, KafkaException, Message

from kafka_app import dead_letters
from kafka_app.client_health import ClientHealth
from kafka_app.dead_letter_tool.reading import (
    Stopped,
    partitions_of,
    read_to_end,
    require_dlq_topic,
)
from kafka_app.lifecycle import EXIT_CLIENT_STUCK, EXIT_FAILED, EXIT_OK, counted


def utc(milliseconds: str) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(int(milliseconds) / 1000, datetime.UTC)
    except (ValueError, OverflowError, OSError):
        return "?"
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def describe(dead_letter: Message, redrives: int | None) -> str:
    """A dead letter in one line; ``?`` for a header it lacks."""
    why = collections.defaultdict(lambda: "?", dead_letters.read(dead_letter))
    error = " ".join(why[dead_letters.EXCEPTION_MESSAGE].split())  # one line, whatever it holds
    origin = f"{why[dead_letters.ORIGINAL_TOPIC]} [{why[dead_letters.ORIGINAL_PARTITION]}]"
    tries = f"{why[dead_letters.EXCEPTION_CLASS]}: {error}; {why[dead_letters.ATTEMPTS]} attempt(s)"
    when = f"{utc(why[dead_letters.FIRST_FAILURE])} to {utc(why[dead_letters.LAST_FAILURE])}"
    redriven = "redriven ?" if redrives is None else f"redriven {counted(redrives, 'time')}"
    return (
        f"{dead_letter.topic()} [{dead_letter.partition()}] @ {dead_letter.offset()}:"
        f" from {origin} @ {why[dead_letters.ORIGINAL_OFFSET]}; {tries}, failed {when};"
        f" group {why[dead_letters.ORIGINAL_GROUP]}; {redriven}"
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
        records = read_to_end(consumer, topic, partitions, stop, health)
        found[topic] = collections.Counter(
            (value or b"").decode(errors="replace")
            for msg in records
            for name, value in msg.headers() or []
            if name == dead_letters.REDRIVEN_FROM
        )
    return found


def read_dead_letters(
    consumer: Consumer, topic: str, found: list[Message], most: int | None, stop, health
) -> None:
    """Into ``found``, the first ``most`` dead letters of ``topic`` (None: all); raises as
    read_to_end does, and ``found`` keeps what was read until then."""
    partitions = require_dlq_topic(consumer, topic)
    with contextlib.closing(read_to_end(consumer, topic, partitions, stop, health)) as read:
        for msg in itertools.islice(read, most):
            found.append(msg)


def list_dead_letters(
    consumer: Consumer, topic: str, most: int | None, stop: threading.Event, health: ClientHealth
) -> int:
    found: list[Message] = []
    try:
        read_dead_letters(consumer, topic, found, most, stop, health)
        origins = {
            why.get(dead_letters.ORIGINAL_TOPIC) for why in map(dead_letters.read, found)
        } - {None}
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
    print_list(found, redrives, topic, most)
    return EXIT_OK


def print_list(found: list[Message], redrives: dict, topic: str, most: int | None) -> None:
    for msg in found:
        origin = dead_letters.read(msg).get(dead_letters.ORIGINAL_TOPIC, "")
        count = redrives[origin][dead_letters.redriven_from(msg)] if origin in redrives else None
        print(describe(msg, count))
    if found:
        limit = f" (the first {most}: --max)" if len(found) == most else ""
        print(f"{counted(len(found), 'dead letter')} in {topic}{limit}")
    else:
        print(f"No dead letters in {topic}")
