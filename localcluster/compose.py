"""Reads docker-compose.yml into what the local cluster needs.

docker-compose.yml is the single source of truth: the Kafka version comes from the apache/kafka
image tag, each broker's server properties from its KAFKA_* environment, the shape and config of
the topic and of its dead-letter topic from the kafka-init service, and the apps to run in
`demo` from the services that are built from the Dockerfile.

The KAFKA_* -> server.properties translation is not done here: nodes.py runs the official image's
own code for it, Kafka's KafkaDockerWrapper. This module keeps each broker's environment as it is
and reads only what localcluster needs before the wrapper runs or besides it: KAFKA_NODE_ID,
KAFKA_LISTENERS and KAFKA_ADVERTISED_LISTENERS (to plan loopback ports), and KAFKA_HEAP_OPTS for
the JVM (the wrapper leaves it out of the properties, as the image's launcher reads it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from localcluster.errors import ClusterError

KAFKA_IMAGE = "apache/kafka"

LISTENER_RE = re.compile(r"^(?P<name>[A-Za-z0-9_]+)://(?P<host>[^:,]*):(?P<port>\d+)$")


@dataclass(frozen=True)
class Listener:
    name: str
    host: str
    port: int


@dataclass
class BrokerService:
    """One kafka-N service of the compose file."""

    service: str
    hostname: str
    node_id: int
    environment: dict[str, str]  # as the container gets it: CLUSTER_ID and KAFKA_* variables
    heap_opts: list[str]

    def listeners(self) -> list[Listener]:
        return parse_listeners(self.environment.get("KAFKA_LISTENERS", ""))

    def advertised(self) -> list[Listener]:
        return parse_listeners(self.environment.get("KAFKA_ADVERTISED_LISTENERS", ""))


@dataclass
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)  # topic configs given at creation


@dataclass
class AppService:
    """A service built from our Dockerfile: run as local processes by `demo`."""

    service: str
    command: list[str]
    replicas: int
    environment: dict[str, str] = field(default_factory=dict)
    restart: str = "no"  # the restart policy: no, always, unless-stopped, on-failure[:N]

    def restarts_after(self, exit_code: int, restarts_so_far: int) -> bool:
        """Whether Docker would start a replica again after it exited with `exit_code`."""
        policy, _, limit = self.restart.partition(":")
        if policy in ("always", "unless-stopped"):
            return True
        if policy == "on-failure":
            return exit_code != 0 and (not limit or restarts_so_far < int(limit))
        return False


@dataclass
class ComposeModel:
    kafka_version: str
    cluster_id: str
    brokers: list[BrokerService]
    topic: TopicSpec
    dead_letter_topic: TopicSpec
    apps: list[AppService]

    @property
    def topics(self) -> list[TopicSpec]:
        """Every topic kafka-init creates."""
        return [self.topic, self.dead_letter_topic]

    def broker_hostnames(self) -> dict[str, BrokerService]:
        return {b.hostname: b for b in self.brokers}


def parse_listeners(value: str) -> list[Listener]:
    listeners = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        match = LISTENER_RE.match(item)
        if not match:
            raise ClusterError(f"cannot parse listener {item!r} in docker-compose.yml")
        listeners.append(Listener(match["name"], match["host"], int(match["port"])))
    return listeners


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): _interpolate("" if v is None else str(v)) for k, v in env.items()}


def _interpolate(value: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` from this environment, as Compose reads them."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m[1]) or m[2] or "", value)


def _kafka_version(image: str) -> str:
    _, _, tag = image.partition(":")
    if not re.fullmatch(r"\d+\.\d+\.\d+", tag):
        raise ClusterError(f"pin the Kafka image to a release tag such as 4.3.1, not {image!r}")
    return tag


def load(path: Path) -> ComposeModel:
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ClusterError(f"{path} not found") from None
    except yaml.YAMLError as exc:
        raise ClusterError(f"{path} is not valid YAML: {exc}") from None
    services: dict[str, dict] = (document or {}).get("services") or {}

    brokers: list[BrokerService] = []
    versions: set[str] = set()
    cluster_ids: set[str] = set()
    for name, service in services.items():
        image = str(service.get("image", ""))
        env = _environment(service)
        if not image.startswith(KAFKA_IMAGE + ":") or "KAFKA_NODE_ID" not in env:
            continue
        versions.add(_kafka_version(image))
        cluster_ids.add(env.get("CLUSTER_ID", ""))
        brokers.append(
            BrokerService(
                service=name,
                hostname=str(service.get("hostname") or name),
                node_id=int(env["KAFKA_NODE_ID"]),
                environment=env,
                heap_opts=env.get("KAFKA_HEAP_OPTS", "-Xms512m -Xmx512m").split(),
            )
        )
    if not brokers:
        raise ClusterError(f"{path} has no apache/kafka services with KAFKA_NODE_ID")
    if len(versions) != 1:
        raise ClusterError(f"brokers in {path} use different Kafka versions: {sorted(versions)}")
    if len(cluster_ids) != 1 or "" in cluster_ids:
        raise ClusterError(f"brokers in {path} must share one non-empty CLUSTER_ID")
    brokers.sort(key=lambda b: b.node_id)

    return ComposeModel(
        kafka_version=versions.pop(),
        cluster_id=cluster_ids.pop(),
        brokers=brokers,
        topic=_topic(services, path, "TOPIC_"),
        dead_letter_topic=_topic(services, path, "DLQ_TOPIC_"),
        apps=_apps(services),
    )


def _topic(services: dict[str, dict], path: Path, prefix: str) -> TopicSpec:
    """The topic kafka-init creates from its <prefix>NAME, PARTITIONS, REPLICATION_FACTOR and
    optional CONFIG, one ``name=value`` as kafka-topics.sh --config takes it."""
    env = _environment(services.get("kafka-init") or {})
    try:
        spec = TopicSpec(
            name=env[f"{prefix}NAME"],
            partitions=int(env[f"{prefix}PARTITIONS"]),
            replication_factor=int(env[f"{prefix}REPLICATION_FACTOR"]),
        )
    except (KeyError, ValueError) as exc:
        needs = f"{prefix}NAME, {prefix}PARTITIONS and {prefix}REPLICATION_FACTOR"
        raise ClusterError(f"kafka-init in {path} must set {needs}: {exc}") from None
    config = env.get(f"{prefix}CONFIG", "")
    if config:
        name, equals, value = config.partition("=")
        if not (name and equals and value):
            raise ClusterError(f"kafka-init in {path}: {prefix}CONFIG={config!r} is not name=value")
        spec.config[name] = value
    return spec


def _apps(services: dict[str, dict]) -> list[AppService]:
    apps = []
    for name, service in services.items():
        if "build" not in service:
            continue
        command = service.get("command") or []
        if isinstance(command, str):
            command = command.split()
        replicas = int((service.get("deploy") or {}).get("replicas", service.get("scale", 1)))
        restart = service.get("restart", "no")
        restart = "no" if restart is False else str(restart)  # YAML 1.1 reads a bare no as false
        if not re.fullmatch(r"no|always|unless-stopped|on-failure(:\d+)?", restart):
            raise ClusterError(f"service {name}: unknown restart policy {restart!r}")
        apps.append(
            AppService(name, [str(c) for c in command], replicas, _environment(service), restart)
        )
    return apps
