"""Settings: defaults, the flags and environment variables that override them (the flag wins,
then the variable; README.md, "Settings"), the client properties file, and the client configs
built from them all."""

import argparse
import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import javaproperties
from confluent_kafka import Consumer, KafkaException

from kafka_app.client_id import default_client_id
from kafka_app.lifecycle import EXIT_USAGE

DEFAULT_BOOTSTRAP_SERVERS = "localhost:9094,localhost:9095,localhost:9096"
DEFAULT_TOPIC = "final-1-topic"
DEFAULT_PRODUCER_INTERVAL_SECONDS = 1.5
DEFAULT_BATCH_GROUP_ID = "batch-group"
DEFAULT_SINGLE_GROUP_ID = "single-group"
DEFAULT_BATCH_SIZE = 10
# The demo's 1.33 msg/s, spread over 3 partitions and 2 batch replicas, fills a batch of 10 in
# 11 to 23 s: a 30 s window shows full batches, and bounds how long a message waits.
DEFAULT_BATCH_WINDOW_SECONDS = 30.0
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_MAX_ATTEMPTS = 5
# Longer than any wait the loops make on purpose (a retry pause of up to 30 s, a commit behind
# a rebalance), shorter than the 120 s after which a stuck commit ends the script.
DEFAULT_LIVENESS_TIMEOUT_SECONDS = 60.0

# Consumer settings at-least-once processing depends on: a properties file may not change them.
CONSUMER_GUARANTEES = {
    "enable.auto.commit": False,  # we commit ourselves, after processing
    "enable.auto.offset.store": False,  # and only the offsets we pass to commit()
}
# Java client settings that librdkafka rejects or, worse, silently ignores.
JAVA_ONLY_PROPERTIES = {
    "max.poll.records": "batches come from consume(num_messages=...); see BATCH_SIZE",
    "fetch.max.wait.ms": "librdkafka calls it fetch.wait.max.ms",
    "sasl.jaas.config": "use sasl.username and sasl.password",
    **dict.fromkeys(["key.serializer", "value.serializer"], "serialization is done in Python"),
    **dict.fromkeys(["key.deserializer", "value.deserializer"], "deserialization is in Python"),
}


class ConfigError(Exception):
    """A configuration problem the user must fix; the message is meant to be shown as is."""


def _checked(convert: Callable[[str], float], ok: Callable[[float], bool], rule: str) -> Any:
    """An argparse type: ``convert``, then ``ok`` must hold; else a one-line error."""

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {rule}: {text!r}") from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value

    return parse


non_negative_float = _checked(float, lambda value: value >= 0, "a finite number >= 0")
positive_float = _checked(float, lambda value: value > 0, "a finite number > 0")
positive_int = _checked(int, lambda value: value > 0, "a whole number > 0")
port_number = _checked(int, lambda value: 0 <= value <= 65535, "a port number, 0 to 65535")


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def log_level(text: str) -> str:
    if (level := text.strip().upper()) not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(
            f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL: {text!r}"
        )
    return level


def log_format(text: str) -> str:
    if (form := text.strip().lower()) not in ("text", "json"):
        raise argparse.ArgumentTypeError(f"expected text or json: {text!r}")
    return form


def env_option(parser, flag: str, env: str, default: Any, parse: Callable, text: str) -> None:
    """``flag``, else the environment variable ``env`` (when not blank), else ``default``;
    argparse runs ``parse`` on the variable's text as on the flag's."""
    from_env = os.environ.get(env, "")
    text += f" (env {env}{'' if default is None else f'; default: {default}'})"
    default = from_env if from_env.strip() else default
    parser.add_argument(flag, default=default, type=parse, help=text)


class _OneLineErrors(argparse.ArgumentParser):
    """A bad flag or variable gives one error line, as README.md promises; usage is in --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def common_parser(description: str | None, service: str) -> argparse.ArgumentParser:
    """A parser with the options every script has: where Kafka is, which topic, extra client
    settings, who we are, logs. ``description``, the script's docstring, keeps its line breaks;
    ``service`` (the script's name in docker-compose.yml) begins the default client id."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _OneLineErrors(description=description, formatter_class=formatter)
    brokers = "comma-separated host:port list of brokers; default: bootstrap.servers from the"
    brokers += f" client properties file, else {DEFAULT_BOOTSTRAP_SERVERS}"
    env_option(parser, "--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", None, non_empty, brokers)
    env_option(parser, "--topic", "KAFKA_TOPIC", DEFAULT_TOPIC, non_empty, "topic name")
    extra = "Java .properties file merged into the client config (SASL/SSL, ...)"
    env_option(parser, "--client-properties", "KAFKA_CLIENT_PROPERTIES", None, non_empty, extra)
    me = default_client_id(service)  # make demo sets producer-1, producer-2, ...
    env_option(parser, "--client-id", "KAFKA_CLIENT_ID", me, non_empty, "Kafka client.id")
    env_option(parser, "--log-level", "LOG_LEVEL", DEFAULT_LOG_LEVEL, log_level, "log level")
    formats = "text (the seed's INFO:root:...) or json (an object per line)"
    env_option(parser, "--log-format", "LOG_FORMAT", "text", log_format, formats)
    return parser


def probe_options(parser: argparse.ArgumentParser) -> None:
    """The options of a long-running script's metrics and health endpoint (kafka_app/probes)."""
    serve = "serve /metrics, /healthz and /readyz on this port (0: any free one); unset: off"
    env_option(parser, "--metrics-port", "METRICS_PORT", None, port_number, serve)
    where = "the address the metrics port listens on"
    env_option(parser, "--metrics-address", "METRICS_ADDRESS", "0.0.0.0", non_empty, where)
    stuck = "/healthz fails once the main loop or a commit has been stuck this many seconds"
    bound = DEFAULT_LIVENESS_TIMEOUT_SECONDS
    env_option(
        parser, "--liveness-timeout", "LIVENESS_TIMEOUT_SECONDS", bound, positive_float, stuck
    )


def consumer_parser(description: str | None, service: str, group_env: str, group: str):
    """The common options, the group, and options both consumers have for tests and scripts."""
    parser = common_parser(description, service)
    probe_options(parser)
    env_option(parser, "--group-id", group_env, group, non_empty, "consumer group")
    dlq = "where records that cannot be processed go; default: <topic>.dlq"
    env_option(parser, "--dlq-topic", "KAFKA_DLQ_TOPIC", None, non_empty, dlq)
    tries = "processing attempts before a record is dead-lettered"
    env_option(parser, "--max-attempts", "MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, positive_int, tries)
    add = parser.add_argument
    add("--max-messages", type=positive_int, metavar="N", help="exit 0 after N are committed")
    add("--idle-exit", type=positive_float, metavar="SECONDS", help="exit 0 after SECONDS idle")
    add("--processed-log", metavar="PATH", help="append '<partition> <offset> <id>' per record")
    add("--process-delay", type=non_negative_float, default=0.0, help="simulated work per message")
    return parser


def load_properties(path: str | Path) -> dict[str, str]:
    """Read a Java .properties file with Java's own grammar (javaproperties); raise ConfigError,
    naming the file (and line), if it cannot be read or sets a Java-only client property."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # missing, unreadable, not UTF-8
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"cannot read client properties file {str(path)!r}: {reason}") from None
    properties, line = {}, 1
    for element in javaproperties.parse(text):
        if isinstance(element, javaproperties.KeyValue):
            if element.key in JAVA_ONLY_PROPERTIES:
                raise ConfigError(
                    f"{path}:{line}: {element.key} is a Java client setting that librdkafka"
                    f" does not support ({JAVA_ONLY_PROPERTIES[element.key]})"
                )
            properties[element.key] = element.value
        line += element.source.count("\n")
    return properties


def connection(bootstrap_flag: str | None, properties_file: str | None) -> tuple[str, dict]:
    """The bootstrap servers: from the flag (or its variable), else the properties file (a
    hosted cluster's names its brokers), else the default; and the file's other entries."""
    properties = load_properties(properties_file) if properties_file else {}
    from_file = properties.pop("bootstrap.servers", None)
    return bootstrap_flag or from_file or DEFAULT_BOOTSTRAP_SERVERS, properties


def client_config(
    bootstrap_servers: str,
    properties: Mapping[str, str] | None,
    tunables: Mapping[str, Any],
    guarantees: Mapping[str, Any],
) -> dict[str, Any]:
    """Merge: bootstrap servers, our tunables, the properties file, then our guarantees. The
    file may change any tunable and add security settings; changing a guarantee raises
    ConfigError, as the script would silently break its promise."""
    properties = dict(properties or {})
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
    properties: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An at-least-once consumer's config; ``extra``: kafka_app.client_health's callbacks, and
    the client.id."""
    tunables = {
        # A new group starts from the oldest message still in the topic, not only new ones.
        "auto.offset.reset": "earliest",
        # When a replica joins or leaves, only the partitions that move are revoked.
        "partition.assignment.strategy": "cooperative-sticky",
        # With its prefetch queue full, librdkafka waits this long (default 1000 ms) before it
        # fetches again: a backlog then flows at a third of its speed (BENCHMARKS.md).
        "fetch.queue.backoff.ms": 20,
        **(extra or {}),
    }
    guarantees = {"group.id": group_id, **CONSUMER_GUARANTEES}
    return client_config(bootstrap_servers, properties, tunables, guarantees)


def create_consumer(args: argparse.Namespace, callbacks: Mapping[str, Any]) -> tuple[Consumer, str]:
    """The consumer the flags describe, and its bootstrap servers; a bad setting exits 2."""
    extra = {**callbacks, "client.id": args.client_id}
    with exit_on_config_error():
        bootstrap, properties = connection(args.bootstrap_servers, args.client_properties)
        return Consumer(consumer_config(bootstrap, args.group_id, properties, extra)), bootstrap


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Around reading the config and creating the client: a bad setting, ours or one that
    librdkafka refuses, ends the script with one ERROR line and exit status 2."""
    try:
        yield
    except (ConfigError, KafkaException, ValueError, TypeError) as exc:
        reason = exc.args[0].str() if isinstance(exc, KafkaException) else exc
        logging.error("Invalid Kafka client configuration: %s", reason)
        raise SystemExit(EXIT_USAGE) from None
