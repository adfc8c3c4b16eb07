"""Reads docker-compose.yml into what the local cluster needs.

docker-compose.yml is the single source of truth: the Kafka version comes from the apache/kafka
image tag, each broker's server properties from its KAFKA_* environment, the shape and config of
the topic and of its dead-letter topic from the kafka-init service, and the apps to run in
`demo` from the services that run the Dockerfile's image.

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
# A top-level volume's extension field: the host folder it holds a copy of
# (docker-compose.secure.yml: the secrets each service may read).
COPY_OF = "x-copy-of"

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
    mounts: dict[str, Path] = field(default_factory=dict)  # container path: host folder

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
    mounts: dict[str, Path] = field(default_factory=dict)  # container path: host folder

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
    # kafka-init's variables, paths made the host's: the secured profile's admin login and ACLs.
    init_environment: dict[str, str] = field(default_factory=dict)

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


def _environment(service: dict, folder: Path | None = None) -> dict[str, str]:
    """The service's variables as its container gets them: its ``env_file`` files (relative to
    ``folder``, the compose file's), then its ``environment``, which wins."""
    files = service.get("env_file") or []
    variables = {}
    for name in [files] if isinstance(files, str) else files:
        variables.update(_env_file((folder or Path.cwd()) / name))
    env = _as_dict(service.get("environment") or {})
    variables.update({str(k): _interpolate("" if v is None else str(v)) for k, v in env.items()})
    return variables


def _env_file(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        hint = " (`python -m localcluster secrets` writes it)" if "secrets" in path.parts else ""
        raise ClusterError(f"{path} not found{hint}") from None
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value for key, value in pairs}


def _mounts(service: dict, folder: Path) -> dict[str, Path]:
    """The service's bind mounts of host folders (``./secrets:/etc/kafka/secrets:ro``)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        source, _, target = str(volume).partition(":")
        if source.startswith((".", "/")):
            mounts[target.split(":")[0]] = (folder / source).resolve()
    return mounts


def host_paths(value: str, mounts: dict[str, Path]) -> str:
    """``value`` with every path under a mounted container folder made the host folder's."""
    for inside, outside in mounts.items():
        value = re.sub(rf"(?<![\w/]){re.escape(inside)}(?=/|$|[,;\s])", str(outside), value)
    return value


def _interpolate(value: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` from this environment, and ``$$`` as ``$``, as Compose
    reads them."""
    pattern = r"\$\$|\$\{(\w+)(?::-([^}]*))?\}"
    return re.sub(
        pattern, lambda m: "$" if m[0] == "$$" else os.environ.get(m[1]) or m[2] or "", value
    )


def _merge(base: dict, override: dict) -> dict:
    """Compose's merge of an override file's service into the base one: variables and volumes
    add to the base's (same name or container path: the override's), other keys replace."""
    merged = {**base, **override}
    if "environment" in base and "environment" in override:
        merged["environment"] = {
            **_as_dict(base["environment"]),
            **_as_dict(override["environment"]),
        }
    if "volumes" in base and "volumes" in override:
        targets = {str(v).split(":")[1] for v in override["volumes"] if ":" in str(v)}
        kept = [
            v for v in base["volumes"] if ":" not in str(v) or str(v).split(":")[1] not in targets
        ]
        merged["volumes"] = kept + list(override["volumes"])
    return merged


def _as_dict(env: dict | list) -> dict:
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def _kafka_version(image: str) -> str:
    _, _, tag = image.partition(":")
    if not re.fullmatch(r"\d+\.\d+\.\d+", tag):
        raise ClusterError(f"pin the Kafka image to a release tag such as 4.3.1, not {image!r}")
    return tag


def _document(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ClusterError(f"{path} not found") from None
    except yaml.YAMLError as exc:
        raise ClusterError(f"{path} is not valid YAML: {exc}") from None


def merged_services(paths: list[Path]) -> dict[str, dict]:
    """The services of the compose files, each override merged into the files before it."""
    services: dict[str, dict] = {}
    copies: dict[str, str] = {}
    for path in paths:
        document = _document(path)
        volumes = (document.get("volumes") or {}).items()
        copies |= {k: str(v[COPY_OF]) for k, v in volumes if isinstance(v, dict) and COPY_OF in v}
        for name, service in (document.get("services") or {}).items():
            services[name] = _merge(services.get(name, {}), service or {})
    return {name: _copies_as_folders(service, copies) for name, service in services.items()}


def _copies_as_folders(service: dict, copies: dict[str, str]) -> dict:
    """A named volume filled with a copy of a host folder (``x-copy-of``) mounts that folder
    here: the local cluster's processes read the host's files themselves."""
    if not service.get("volumes"):
        return service
    volumes = []
    for volume in service["volumes"]:
        source, colon, rest = str(volume).partition(":")
        volumes.append(f"{copies[source]}{colon}{rest}" if source in copies else volume)
    return {**service, "volumes": volumes}


def load(path: Path, *overrides: Path) -> ComposeModel:
    """The model of ``path``, with ``overrides`` merged in as ``docker compose -f path -f ...``
    merges them; relative paths (env files, mounts) are the first file's folder's, as there."""
    services = merged_services([path, *overrides])
    folder = path.parent

    brokers: list[BrokerService] = []
    versions: set[str] = set()
    cluster_ids: set[str] = set()
    for name, service in services.items():
        image = str(service.get("image", ""))
        env = _environment(service, folder)
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
                mounts=_mounts(service, folder),
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
        apps=_apps(services, folder),
        init_environment=_host_environment(services.get("kafka-init") or {}, folder),
    )


def _host_environment(service: dict, folder: Path) -> dict[str, str]:
    mounts = _mounts(service, folder)
    return {key: host_paths(value, mounts) for key, value in _environment(service, folder).items()}


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


def _restart_policy(name: str, service: dict) -> str:
    restart = service.get("restart", "no")
    restart = "no" if restart is False else str(restart)  # YAML 1.1 reads a bare no as false
    if not re.fullmatch(r"no|always|unless-stopped|on-failure(:\d+)?", restart):
        raise ClusterError(f"service {name}: unknown restart policy {restart!r}")
    return restart


def _apps(services: dict[str, dict], folder: Path) -> list[AppService]:
    """The services of the Dockerfile's image: the one that builds it, and those that run it."""
    built = {service.get("image") for service in services.values() if "build" in service}
    apps = []
    for name, service in services.items():
        if "build" not in service and (service.get("image") or None) not in built:
            continue
        command = service.get("command") or []
        if isinstance(command, str):
            command = command.split()
        replicas = int((service.get("deploy") or {}).get("replicas", service.get("scale", 1)))
        restart = _restart_policy(name, service)
        environment, mounts = _environment(service, folder), _mounts(service, folder)
        apps.append(
            AppService(name, [str(c) for c in command], replicas, environment, restart, mounts)
        )
    return apps
