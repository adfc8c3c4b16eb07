"""Settings: the defaults (which kafka_app/flags.py lets flags and environment variables
override), the client properties file, and the client configs built from them all."""

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import javaproperties
from confluent_kafka import KafkaException

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
# With idempotence librdkafka retries a message without limit until this timeout, so it is
# the longest a message may wait for a leader: seconds for a broker restart or an election, a
# minute or two for a full cluster restart. Longer would only hide a dead cluster.
MESSAGE_TIMEOUT_MS = 300_000
LINGER_MS = 5

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


# The secured profile's variables (README.md, "Secure it"), each a librdkafka setting. The
# password may come from a file instead, KAFKA_SASL_PASSWORD_FILE, to keep it out of the
# environment; a --client-properties file can set all of them, and wins.
SECURITY_VARIABLES = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
}


class ConfigError(Exception):
    """A configuration problem the user must fix; the message is meant to be shown as is."""


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


def security_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The librdkafka settings SECURITY_VARIABLES and KAFKA_SASL_PASSWORD_FILE give."""
    found = {key: environ[name] for name, key in SECURITY_VARIABLES.items() if environ.get(name)}
    if path := environ.get("KAFKA_SASL_PASSWORD_FILE"):
        if "sasl.password" in found:
            raise ConfigError("set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both")
        try:
            found["sasl.password"] = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigError(f"cannot read KAFKA_SASL_PASSWORD_FILE {path!r}: {reason}") from None
    return found


def connection(bootstrap_flag: str | None, properties_file: str | None) -> tuple[str, dict]:
    """The bootstrap servers: from the flag (or its variable), else the properties file (a
    hosted cluster's names its brokers), else the default; and the other settings: the
    security variables', overridden by the file's entries."""
    properties = load_properties(properties_file) if properties_file else {}
    from_file = properties.pop("bootstrap.servers", None)
    properties = {**security_settings(os.environ), **properties}
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


def producer_config(
    bootstrap_servers: str, properties: Mapping[str, str] | None, interval: float, extra: dict
) -> dict:
    """``extra``: the client id and the callbacks (the delivery report, ClientHealth's)."""
    tunables = {
        # At full speed, wait up to 5 ms to fill a request with more messages. With a pause
        # between messages there is nothing to batch: lingering would only add latency.
        "linger.ms": LINGER_MS if interval * 1000 < LINGER_MS else 0,
        # The cheapest codec; it shrinks the JSON field names repeated in a batch.
        "compression.type": "lz4",
        "message.timeout.ms": MESSAGE_TIMEOUT_MS,
        **extra,
    }
    # Idempotence implies acks=all, max.in.flight <= 5 and retries until message.timeout.ms;
    # a properties file that sets a conflicting value fails when the Producer is created.
    guarantees = {"enable.idempotence": True}
    return client_config(bootstrap_servers, properties, tunables, guarantees)


def consumer_config(
    bootstrap_servers: str,
    group_id: str,
    properties: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    protocol: str = "classic",
) -> dict[str, Any]:
    """An at-least-once consumer's config; ``extra``: kafka_app.client_health's callbacks, and
    the client.id; ``protocol``: the group protocol, unless the properties file sets one."""
    protocol = (properties or {}).get("group.protocol", protocol)
    tunables = {
        # A new group starts from the oldest message still in the topic, not only new ones.
        "auto.offset.reset": "earliest",
        "group.protocol": protocol,
        # With its prefetch queue full, librdkafka waits this long (default 1000 ms) before it
        # fetches again: a backlog then flows at a third of its speed (BENCHMARKS.md).
        "fetch.queue.backoff.ms": 20,
        **(extra or {}),
    }
    if protocol == "classic":  # KIP-848's consumer protocol assigns on the broker, always so
        # When a replica joins or leaves, only the partitions that move are revoked.
        tunables["partition.assignment.strategy"] = "cooperative-sticky"
    guarantees = {"group.id": group_id, **CONSUMER_GUARANTEES}
    return client_config(bootstrap_servers, properties, tunables, guarantees)


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
