"""Configuration, logging, shutdown and the few helpers the three scripts share.

Every setting has a default that works with docker-compose.yml and the local cluster, an
environment variable (handy in containers), and a command-line flag (handy by hand). A flag
beats the environment variable, which beats the default:

=========================  ====================================================================
environment variable       meaning [default]
=========================  ====================================================================
KAFKA_BOOTSTRAP_SERVERS    brokers to contact first [localhost:9094,localhost:9095,localhost:9096]
KAFKA_TOPIC                topic the producer writes and the consumers read [final-1-topic]
KAFKA_CLIENT_PROPERTIES    optional Java-style .properties file whose key=value pairs are merged
                           into the client config: SASL/SSL settings for a hosted cluster [none]
PRODUCER_INTERVAL_SECONDS  pause between two messages, 0 = as fast as possible [1.5]
BATCH_GROUP_ID             consumer group of batch_message_consumer.py [batch-group]
SINGLE_GROUP_ID            consumer group of single_message_consumer.py [single-group]
BATCH_SIZE                 most messages per batch [10]
BATCH_WINDOW_SECONDS       longest wait to fill a batch, from its first message [30]
LOG_LEVEL                  DEBUG, INFO, WARNING, ERROR or CRITICAL [INFO]
=========================  ====================================================================

A bad value (say ``PRODUCER_INTERVAL_SECONDS=-1`` or ``BATCH_SIZE=ten``) stops the script with a
one-line argparse error and exit status 2, never with a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from message_model import MessageDecodeError, MessageModel

DEFAULT_BOOTSTRAP_SERVERS = "localhost:9094,localhost:9095,localhost:9096"
DEFAULT_TOPIC = "final-1-topic"
DEFAULT_PRODUCER_INTERVAL_SECONDS = 1.5
DEFAULT_BATCH_GROUP_ID = "batch-group"
DEFAULT_SINGLE_GROUP_ID = "single-group"
DEFAULT_BATCH_SIZE = 10
# Why 30 s: the demo runs 2 producers x 1 message / 1.5 s = 1.33 msg/s, spread by key over 3
# partitions, read by 2 batch-consumer replicas. One replica owns 2 partitions (~0.9 msg/s, a
# batch of 10 in ~11 s), the other owns 1 (~0.44 msg/s, 10 messages in ~23 s on average). A
# 30 s window lets both show full batches of 10 most of the time, while bounding how long a
# message can wait before it is processed and committed. With more traffic, batches fill up
# (and are committed) long before the window closes.
DEFAULT_BATCH_WINDOW_SECONDS = 30.0
DEFAULT_LOG_LEVEL = "INFO"

# Consumer settings at-least-once processing depends on: a properties file may not change them.
CONSUMER_GUARANTEES = {
    "enable.auto.commit": False,  # we commit ourselves, after processing
    "enable.auto.offset.store": False,  # and only the offsets we pass to commit()
}
# Names from Java client configs that librdkafka does not know (or silently ignores).
JAVA_ONLY_PROPERTIES = {
    "max.poll.records": "batches come from consume(num_messages=...); see BATCH_SIZE",
    "fetch.max.wait.ms": "librdkafka calls it fetch.wait.max.ms",
    "sasl.jaas.config": "use sasl.username and sasl.password",
    "key.serializer": "serialization is done in Python",
    "value.serializer": "serialization is done in Python",
    "key.deserializer": "deserialization is done in Python",
    "value.deserializer": "deserialization is done in Python",
}


class ConfigError(Exception):
    """A configuration problem the user must fix; the message is meant to be shown as is."""


# --------------------------------------------------------------------------------------------
# Command line and environment
# --------------------------------------------------------------------------------------------


def non_negative_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(
            f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {text!r}"
        )
    return level


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse plus options whose default comes from an environment variable.

    ``add_env_argument("--interval", env="PRODUCER_INTERVAL_SECONDS", default=1.5, type=...)``:
    the flag wins, then the variable (checked by the same ``type``), then the default. Every
    bad value ends in ``parser.error()``: usage, a one-line message, exit status 2.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self._env_options: list[tuple[str, str, Any, Callable[[str], Any]]] = []

    def add_env_argument(
        self,
        flag: str,
        *,
        env: str,
        default: Any,
        type: Callable[[str], Any],
        help: str,
        dest: str | None = None,
    ) -> None:
        shown = "" if default is None else f"; default: {default}"
        action = self.add_argument(
            flag,
            type=type,
            default=None,
            help=f"{help} (env {env}{shown})",
            **({"dest": dest} if dest else {}),
        )
        self._env_options.append((action.dest, env, default, type))

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:
        parsed = super().parse_args(args, namespace)
        for dest, env, default, convert in self._env_options:
            if getattr(parsed, dest) is not None:
                continue  # given as a flag
            raw = os.environ.get(env, "")
            if not raw.strip():
                setattr(parsed, dest, default)
                continue
            try:
                setattr(parsed, dest, convert(raw))
            except (argparse.ArgumentTypeError, ValueError) as exc:
                self.error(f"environment variable {env}={raw!r}: {exc}")
        if hasattr(parsed, "client_properties_file"):
            self._load_client_properties(parsed)
        return parsed

    def _load_client_properties(self, parsed: argparse.Namespace) -> None:
        parsed.client_properties = {}
        if parsed.client_properties_file:
            try:
                parsed.client_properties = load_properties(parsed.client_properties_file)
            except ConfigError as exc:
                # Not a usage mistake, so no usage text: one line says what to fix.
                self.exit(2, f"{self.prog}: error: {exc}\n")
        # Bootstrap servers: flag, then KAFKA_BOOTSTRAP_SERVERS, then the properties file (a
        # hosted cluster's client.properties usually names its brokers), then the default.
        file_bootstrap = parsed.client_properties.pop("bootstrap.servers", None)
        if parsed.bootstrap_servers is None:
            parsed.bootstrap_servers = file_bootstrap or DEFAULT_BOOTSTRAP_SERVERS


def add_common_arguments(parser: ArgumentParser) -> None:
    """The options every script has: where Kafka is, which topic, extra client settings, logs."""
    parser.add_env_argument(
        "--bootstrap-servers",
        env="KAFKA_BOOTSTRAP_SERVERS",
        default=None,  # resolved after the properties file is read (see above)
        type=non_empty,
        help="comma-separated host:port list of brokers; default: bootstrap.servers from"
        f" the client properties file, else {DEFAULT_BOOTSTRAP_SERVERS}",
    )
    parser.add_env_argument(
        "--topic", env="KAFKA_TOPIC", default=DEFAULT_TOPIC, type=non_empty, help="topic name"
    )
    parser.add_env_argument(
        "--client-properties",
        env="KAFKA_CLIENT_PROPERTIES",
        default=None,
        type=non_empty,
        help="Java-style .properties file merged into the client config (SASL/SSL, ...)",
        dest="client_properties_file",  # args.client_properties will hold the parsed dict
    )
    parser.add_env_argument(
        "--log-level", env="LOG_LEVEL", default=DEFAULT_LOG_LEVEL, type=log_level, help="log level"
    )


def add_consumer_arguments(parser: ArgumentParser, group_env: str, default_group: str) -> None:
    """Flags both consumers have: the group, and options for tests and scripting."""
    parser.add_env_argument(
        "--group-id", env=group_env, default=default_group, type=non_empty, help="consumer group"
    )
    parser.add_argument(
        "--max-messages",
        type=positive_int,
        metavar="N",
        help="exit 0 after N messages are processed and committed",
    )
    parser.add_argument(
        "--idle-exit",
        type=positive_float,
        metavar="SECONDS",
        help="exit 0 after SECONDS without a new message",
    )
    parser.add_argument(
        "--processed-log",
        metavar="PATH",
        help="append '<partition> <offset> <message_id>' per processed message, before commit",
    )
    parser.add_argument(
        "--process-delay",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="simulated work per message (default: 0)",
    )


def load_properties(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a Java-style .properties file: ``key=value`` or ``key: value`` lines.

    ``#`` and ``!`` start comment lines, a trailing backslash continues a line, and the usual
    escapes (``\\t``, ``\\n``, ``\\uXXXX``, ``\\=``, ...) work. Keys and values are stripped.
    Raises ConfigError, naming the file and line, for anything else.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read client properties file {str(path)!r}: {exc.strerror or exc}"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"client properties file {str(path)!r} is not UTF-8: {exc}") from None

    properties: dict[str, str] = {}
    for lineno, line in _logical_lines(text):
        key, value = _split_property(line)
        if key is None:
            raise ConfigError(f"{path}:{lineno}: expected key=value, got {line.strip()!r}")
        if key in JAVA_ONLY_PROPERTIES:
            raise ConfigError(
                f"{path}:{lineno}: {key} is a Java client setting that librdkafka does not"
                f" support ({JAVA_ONLY_PROPERTIES[key]})"
            )
        properties[key] = value
    return properties


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines; drop blank and comment lines. Returns (first line no, text)."""
    result: list[tuple[int, str]] = []
    pending: str | None = None
    start = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip() if pending is not None else raw
        if pending is None:
            if not line.strip() or line.lstrip().startswith(("#", "!")):
                continue
            start = lineno
            pending = ""
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:  # an odd number of backslashes: the line continues
            pending += line[:-1]
            continue
        result.append((start, pending + line))
        pending = None
    if pending is not None:
        result.append((start, pending))
    return result


def _split_property(line: str) -> tuple[str | None, str]:
    line = line.strip()
    i = 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        if line[i] in "=:":
            key = _unescape(line[:i]).strip()
            return (key or None), _unescape(line[i + 1 :]).strip()
        i += 1
    return None, ""


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and i + 6 <= len(text):
                try:
                    out.append(chr(int(text[i + 2 : i + 6], 16)))
                    i += 6
                    continue
                except ValueError:
                    pass
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Client configuration
# --------------------------------------------------------------------------------------------


def client_config(
    bootstrap_servers: str,
    client_properties: Mapping[str, str] | None,
    tunables: Mapping[str, Any],
    guarantees: Mapping[str, Any],
) -> dict[str, Any]:
    """Merge: bootstrap servers, our tunables, the properties file, then our guarantees.

    The properties file may change any tunable (linger.ms, session.timeout.ms, ...), and adds
    security settings. It may not change a guarantee: that raises ConfigError, because the
    script's delivery semantics would silently be different from what it promises.
    """
    properties = dict(client_properties or {})
    tunables = {"logger": LIBRDKAFKA_LOGGER, **tunables}
    for key, value in guarantees.items():
        if key in properties and str(properties[key]).lower() != str(value).lower():
            raise ConfigError(
                f"the client properties file sets {key}={properties[key]}, but this script"
                f" needs {key}={str(value).lower()} for its delivery guarantees"
            )
    return {"bootstrap.servers": bootstrap_servers, **tunables, **properties, **guarantees}


def consumer_config(
    bootstrap_servers: str,
    group_id: str,
    client_properties: Mapping[str, str] | None = None,
    errors: ErrorReporter | None = None,
) -> dict[str, Any]:
    """Config for an at-least-once consumer that commits explicit offsets after processing."""
    tunables: dict[str, Any] = {
        # A new group starts from the oldest message still in the topic, not only new ones.
        "auto.offset.reset": "earliest",
        # Incremental rebalancing: when a replica joins or leaves, only the partitions that
        # move are revoked; the others keep being consumed.
        "partition.assignment.strategy": "cooperative-sticky",
        # librdkafka prefetches up to queued.min.messages (100000) and, once that queue is
        # full, fetches again only after fetch.queue.backoff.ms (1000 by default). A loop that
        # drains the queue faster than that sits idle: plain consumption of a backlog ran at a
        # third of its speed (bench/, "Plain consumption"). Retrying after 20 ms costs nothing.
        "fetch.queue.backoff.ms": 20,
    }
    if errors is not None:
        tunables.update(errors.callbacks())
    return client_config(
        bootstrap_servers,
        client_properties,
        tunables,
        {"group.id": group_id, **CONSUMER_GUARANTEES},
    )


class _DropConnectFailures(logging.Filter):
    """librdkafka logs every failed connection attempt (facility FAIL), many per second while
    brokers are down; error_cb reports the same errors, rate-limited, so drop these lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.args, tuple) and record.args[:1] == ("FAIL",))


# How often each client reports statistics to ErrorReporter.on_stats, and for how long they
# may list no broker before the client counts as stranded. Stats cost one small JSON document
# per interval; the wait lets librdkafka recover first, should a later version do so.
STATS_INTERVAL_MS = 5000
STRANDED_AFTER_SECONDS = 15.0

# librdkafka's own log lines (e.g. "WARNING:librdkafka:GETPID [rdkafka#producer-1] ...") go
# through Python logging instead of straight to stderr, so they share our format and level.
LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")
LIBRDKAFKA_LOGGER.addFilter(_DropConnectFailures())


class ErrorReporter:
    """``error_cb`` and ``stats_cb`` for any client: logs client-level errors, remembers a
    fatal one, and notices a client stranded with no broker to talk to.

    While brokers are unreachable librdkafka reports transport errors here and keeps
    reconnecting by itself; they are logged as warnings, not treated as a crash. A fatal error
    (e.g. the idempotent producer's state can no longer be trusted) makes the client
    unusable, and so does being stranded (see :meth:`on_stats`): the script checks
    :attr:`broken` and stops.
    """

    RETRIABLE = (
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError._TIMED_OUT,
    )

    REPEAT_INTERVAL = 30.0  # while brokers stay down, repeat a warning at most this often

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # seconds; tests pass their own
        self.fatal_error: KafkaError | None = None
        self.stranded = False  # the client knows no broker any more: it will never reconnect
        self._no_broker_since: dict[str, float] = {}  # client name -> first stats without one
        self._last_logged: dict[int, float] = {}  # error code -> when last logged
        self._suppressed: dict[int, int] = {}  # error code -> repeats not logged since

    @property
    def broken(self) -> bool:
        """The client can do nothing more: the script must stop (and a restart recovers)."""
        return self.fatal_error is not None or self.stranded

    def callbacks(self) -> dict[str, Any]:
        """The client config entries that report to this object."""
        return {
            "error_cb": self,
            "stats_cb": self.on_stats,
            "statistics.interval.ms": STATS_INTERVAL_MS,
        }

    def __call__(self, error: KafkaError) -> None:
        if error.fatal():
            self.fatal_error = error
            logging.error("FATAL Kafka error, stopping: %s", error.str())
        elif error.code() in self.RETRIABLE:
            self._warn_rate_limited(error)
        else:
            logging.error("Kafka error: %s", error.str())

    def on_stats(self, stats_json: str) -> None:
        """Mark the client stranded once its statistics have listed no broker for a while.

        librdkafka (2.10 and later) forgets every broker a Metadata response leaves out. While
        a whole cluster shuts down, its last broker may answer with no broker at all; the client
        then knows none, has nowhere to send a request, and never re-bootstraps, so it waits
        forever even after the cluster is back (confluentinc/librdkafka#5301, open). Its
        statistics show that state: no broker left but the internal and logical ones.
        """
        stats = json.loads(stats_json)
        brokers = stats.get("brokers")
        if brokers is None:
            return
        name, now = stats.get("name", ""), self.clock()
        if any(b.get("source") in ("configured", "learned") for b in brokers.values()):
            self._no_broker_since.pop(name, None)
            return
        since = self._no_broker_since.setdefault(name, now)
        if now - since >= STRANDED_AFTER_SECONDS and not self.stranded:
            self.stranded = True
            logging.critical(
                "The Kafka client has known no broker for %.0f s: the last metadata it got"
                " listed none, and librdkafka does not recover from that by itself"
                " (confluentinc/librdkafka#5301). Stopping with exit status %d so that a"
                " restart reconnects",
                now - since,
                EXIT_CLIENT_STUCK,
            )

    def _warn_rate_limited(self, error: KafkaError) -> None:
        # librdkafka reconnects by itself, and reports every failed attempt (several a second
        # while brokers are down): say it once, then at most every REPEAT_INTERVAL seconds.
        code, now = error.code(), self.clock()
        if now - self._last_logged.get(code, -math.inf) < self.REPEAT_INTERVAL:
            self._suppressed[code] = self._suppressed.get(code, 0) + 1
            return
        self._last_logged[code] = now
        repeats = self._suppressed.pop(code, 0)
        more = f" ({repeats} similar in the last {self.REPEAT_INTERVAL:g} s)" if repeats else ""
        if code == KafkaError._ALL_BROKERS_DOWN:
            logging.warning("No broker reachable; librdkafka keeps retrying%s", more)
        else:
            logging.warning("Kafka connection problem, retrying: %s%s", error.str(), more)


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Wrap client creation: a bad config ends the script with one ERROR line and exit 2.

    librdkafka checks the whole config when the client is created (unknown property, acks
    conflicting with idempotence, ...) and raises KafkaException; our own checks raise
    ConfigError.
    """
    try:
        yield
    except (ConfigError, KafkaException, ValueError, TypeError) as exc:
        reason = exc.args[0].str() if isinstance(exc, KafkaException) else exc
        logging.error("Invalid Kafka client configuration: %s", reason)
        raise SystemExit(2) from None


# --------------------------------------------------------------------------------------------
# Logging and shutdown
# --------------------------------------------------------------------------------------------


def setup_logging(level: str = DEFAULT_LOG_LEVEL) -> None:
    """Python's default format, e.g. ``INFO:root:SingleConsumer received: Test message 2886``."""
    logging.basicConfig(level=level)


def install_shutdown_handlers() -> threading.Event:
    """Return an Event that SIGTERM (docker stop) and SIGINT (Ctrl-C) set.

    The handlers do nothing else. Python's default SIGINT handler raises KeyboardInterrupt
    wherever the main thread happens to be, for example in the middle of ``flush()`` or
    between processing a batch and committing it. Here the main loop checks the event at
    safe points and shuts down in order.
    """
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


# --------------------------------------------------------------------------------------------
# Consumer helpers: poison records, commits, the record log
# --------------------------------------------------------------------------------------------


def decode_record(msg: Message) -> MessageModel | None:
    """Deserialize one record, or log why it is a poison record and return None.

    A poison record (a tombstone, bytes that are not a MessageModel) will never become valid,
    so retrying it would block its partition forever. The caller skips it and commits past
    it. A dead-letter topic would be the next step in a real service.
    """
    value = msg.value()
    try:
        if value is None:
            raise MessageDecodeError("tombstone (value is null)")
        return MessageModel.deserialize(value)
    except MessageDecodeError as exc:
        logging.warning(
            "Skipping poison record %s [%d] @ %d (key %r): %s",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            msg.key(),
            exc,
        )
        return None


def log_consumer_error(msg: Message) -> None:
    """Log an error event returned by poll()/consume() instead of a record.

    Such events (e.g. "Subscribed topic not available") carry no record to process or commit;
    librdkafka keeps fetching. A fatal one (only possible with static membership) raises.
    """
    error = msg.error()
    if error.code() == KafkaError._PARTITION_EOF:
        return
    if error.fatal():
        raise KafkaException(error)
    logging.warning(
        "Consumer error on %s [%s] @ %s: %s",
        msg.topic(),
        msg.partition(),
        msg.offset(),
        error.str(),
    )


Offsets = dict[tuple[str, int], int]  # (topic, partition) -> next offset to read


def format_offsets(offsets: Offsets) -> str:
    """``final-1-topic [0]@123, [2]@88`` (sorted; the topic is named once per topic)."""
    parts = []
    last_topic = None
    for (topic, partition), offset in sorted(offsets.items()):
        prefix = f"{topic} " if topic != last_topic else ""
        parts.append(f"{prefix}[{partition}]@{offset}")
        last_topic = topic
    return ", ".join(parts)


# A synchronous commit takes milliseconds, or as long as the group coordinator is away. With
# every broker down, librdkafka gives up by itself after session.timeout.ms (45 s, _WAIT_COORD),
# but not always: in a test whose whole cluster was away for 122 s on a loaded machine, commits
# were still unanswered at 120 s. Past this bound the consumer exits with EXIT_CLIENT_STUCK so
# that a restart (restart: unless-stopped) recovers; the price is its uncommitted work being
# processed again, never a loss. The bound is there for worse: a client stranded with no broker
# (ErrorReporter.on_stats) while a commit waits never answers it, and the statistics that tell
# us so are not served until commit() returns. (The bound was 60 s until loaded runs, whose
# full restart took longer, ended consumers that were only waiting.) A commit also waits, up to
# session.timeout.ms, behind a rebalance that waits for a member that left just before the
# coordinator moved (RELIABILITY.md, "when the group coordinator moves during a rebalance").
COMMIT_TIMEOUT_SECONDS = 120.0
EXIT_CLIENT_STUCK = 3

# A commit made while the group rebalances (a replica joins or leaves) is refused with one of
# these; it is retried once the rebalance is over, so it is routine, not an error.
_REBALANCE_ERRORS = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.UNKNOWN_MEMBER_ID,
}


def commit_offsets(consumer: Any, offsets: Offsets) -> Offsets:
    """Synchronously commit explicit offsets; return those that failed (empty on success).

    ``offsets`` holds "last processed + 1" per partition: the committed offset is the next
    record to read. A request-level failure fails them all; otherwise each returned
    TopicPartition carries its own ``.error``. A fatal error is raised, anything else is
    logged and left to the caller to retry (the records were processed, so a later commit of
    a higher offset covers them; until then a restart only re-delivers, never skips).

    The commit runs on the calling thread, which may be inside ``poll()``: librdkafka calls
    the rebalance callbacks there, and ``on_revoke`` commits. confluent-kafka 2.16 lets a
    Consumer be called only by the thread inside it until that call returns; a commit made
    for it by another thread waits for ``poll()``, which waits for ``on_revoke``: a deadlock
    (it stalled the rebalance test until this was found). ``commit()`` takes no timeout, so a
    watchdog thread enforces COMMIT_TIMEOUT_SECONDS instead.
    """
    if not offsets:
        return {}  # committing nothing would raise _NO_OFFSET
    request = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
    try:
        with _commit_watchdog.watching(offsets):
            result = consumer.commit(offsets=request, asynchronous=False)
    except KafkaException as exc:
        error = exc.args[0]
        if isinstance(error, KafkaError) and error.fatal():
            raise
        _log_commit_failure(format_offsets(offsets), error)
        return dict(offsets)
    failed = {}
    for tp in result or []:
        if tp.error is not None:
            failed[(tp.topic, tp.partition)] = offsets[(tp.topic, tp.partition)]
            _log_commit_failure(f"{tp.topic} [{tp.partition}]@{tp.offset}", tp.error)
    return failed


class _CommitWatchdog:
    """One daemon thread that ends the process when a commit outlasts COMMIT_TIMEOUT_SECONDS.

    It never calls into the Consumer (see commit_offsets), and it lives as long as the process:
    a thread per commit (threading.Timer) cost about 120 µs to start and cancel, a seventh of
    the single consumer's whole commit cycle.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._armed: tuple[float, Offsets] | None = None  # (deadline, offsets being committed)
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, offsets: Offsets) -> Iterator[None]:
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="commit-watchdog", daemon=True
                )
                self._thread.start()
            self._armed = (time.monotonic() + COMMIT_TIMEOUT_SECONDS, offsets)
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._armed = None

    def _run(self) -> None:
        while True:
            with self._changed:
                while True:
                    armed = self._armed
                    if armed is None:
                        self._changed.wait()
                    elif (left := armed[0] - time.monotonic()) > 0:
                        self._changed.wait(left)
                    else:
                        self._armed = None
                        break
            _exit_stuck_in_commit(armed[1])


_commit_watchdog = _CommitWatchdog()


def _exit_stuck_in_commit(offsets: Offsets) -> None:
    """The watchdog's verdict. Nothing can unstick the client (close() would block too): end
    the process, as a crash would. What was processed but not committed is delivered again
    after the restart (docker-compose: restart: unless-stopped), so nothing is skipped."""
    logging.critical(
        "Commit of %s did not complete in %.0f s: the Kafka client is stuck; exiting with"
        " status %d so that a restart recovers (uncommitted messages will be redelivered)",
        format_offsets(offsets),
        COMMIT_TIMEOUT_SECONDS,
        EXIT_CLIENT_STUCK,
    )
    os._exit(EXIT_CLIENT_STUCK)


def _log_commit_failure(what: str, error: Any) -> None:
    code = error.code() if isinstance(error, KafkaError) else None
    if code in _REBALANCE_ERRORS:
        logging.warning("Commit of %s refused during a rebalance (%s); will retry", what, error)
    else:
        logging.error("Commit of %s failed: %s", what, error)


def merge_offsets(into: Offsets, offsets: Offsets) -> None:
    """Keep the higher offset per partition (a later commit covers an earlier one)."""
    for key, offset in offsets.items():
        if offset > into.get(key, -1):
            into[key] = offset


def format_partitions(partitions: list[TopicPartition]) -> str:
    """``final-1-topic [0], [2]`` for rebalance logs."""
    by_topic: dict[str, list[str]] = {}
    for tp in sorted(partitions, key=lambda tp: (tp.topic, tp.partition)):
        by_topic.setdefault(tp.topic, []).append(f"[{tp.partition}]")
    return "; ".join(f"{topic} {', '.join(parts)}" for topic, parts in by_topic.items()) or "none"


class RecordLog:
    """Optional audit log: one line ``<partition> <offset> <message_id>`` per record.

    Used by tests and audits (``--delivered-log`` / ``--processed-log``). Each line is flushed
    to the OS at once, so a crash of this process loses no line already written. Poison
    records have no message id and are logged as ``-``. An offset of -1 in a delivered log
    means "acknowledged, offset not reported" (see producer.DeliveryTracker).
    """

    def __init__(self, path: str | None) -> None:
        self._file: TextIO | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    @property
    def enabled(self) -> bool:
        """False without a path: hot loops skip gathering what write() would ignore."""
        return self._file is not None

    def write(self, partition: int, offset: int, message_id: str | None) -> None:
        if self._file is not None:
            self._file.write(f"{partition} {offset} {message_id or '-'}\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
