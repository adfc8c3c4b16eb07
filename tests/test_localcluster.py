"""The local cluster is a real 3-broker KRaft cluster shaped as docker-compose.yml says."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from confluent_kafka import KafkaError, KafkaException, Producer

from localcluster import admin, compose, jars
from localcluster import cluster as cluster_module
from localcluster.cluster import LocalCluster
from localcluster.errors import ClusterError
from localcluster.holders import Holder, holders
from localcluster.nodes import (
    ALREADY_FORMATTED,
    Node,
    error_lines,
    local_environment,
    port_in_use,
)
from localcluster.portcheck import explain
from support.records import fresh_reader

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parent.parent
TOPIC = "final-1-topic"
DEAD_LETTER_TOPIC = "final-1-topic.dlq"
THIRTY_DAYS_MS = str(30 * 24 * 60 * 60 * 1000)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120, unset=()):
    """`python -m localcluster ARGS` with this environment, plus `env`, less `unset`."""
    environment = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-m", "localcluster", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def produce(bootstrap: str, topic: str, values: list[bytes], timeout: float = 30) -> list:
    """Produces with acks=all and returns the delivery errors (None for each success)."""
    results = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "message.timeout.ms": int(timeout * 1000),
        }
    )
    for value in values:
        producer.produce(topic, value, key=value, on_delivery=lambda err, _msg: results.append(err))
    assert producer.flush(timeout + 5) == 0, "messages still queued after the delivery timeout"
    return results


def consume_until(bootstrap: str, topic: str, wanted: set[bytes], timeout: float = 30) -> set:
    """Reads the topic from the start until every wanted value is seen or time runs out."""
    consumer = fresh_reader(bootstrap)
    consumer.subscribe([topic])
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout
    try:
        while not wanted <= seen and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error() is None:
                    seen.add(msg.value())
    finally:
        consumer.close()
    return seen & wanted


def test_three_brokers_and_topic_shaped_as_compose_says(kafka_cluster):
    assert admin.registered_brokers(kafka_cluster.admin) == [0, 1, 2]
    parts = kafka_cluster.wait_full_isr(TOPIC, timeout=30)
    assert [p.partition for p in parts] == [0, 1, 2]
    assert all(len(p.replicas) == 2 for p in parts), parts
    assert all(sorted(p.isr) == sorted(p.replicas) for p in parts), parts
    # Spread: with RF 2 over 3 brokers every broker holds a replica of two partitions.
    assert sorted(b for p in parts for b in p.replicas) == [0, 0, 1, 1, 2, 2]


def test_dead_letter_topic_shaped_as_the_topic_and_kept_30_days(kafka_cluster):
    parts = kafka_cluster.wait_full_isr(DEAD_LETTER_TOPIC, timeout=30)
    assert [(p.partition, len(p.replicas)) for p in parts] == [(0, 2), (1, 2), (2, 2)], parts
    assert sorted(b for p in parts for b in p.replicas) == [0, 0, 1, 1, 2, 2]
    retention = admin.topic_config(kafka_cluster.admin, DEAD_LETTER_TOPIC)["retention.ms"]
    assert retention == THIRTY_DAYS_MS
    # Control: the main topic has the broker's default, so the value above is the topic's own.
    assert admin.topic_config(kafka_cluster.admin, TOPIC)["retention.ms"] == "604800000"


def test_a_topic_with_another_config_than_compose_asks_is_refused_in_one_line(
    kafka_cluster, fresh_topic
):
    """What `up` says of a dead-letter topic made with another retention: kafka-init and `up`
    leave an existing topic as it is."""
    spec = compose.TopicSpec(fresh_topic, 3, 2, {"retention.ms": THIRTY_DAYS_MS})
    with pytest.raises(ClusterError) as refused:
        admin.require_config(admin.topic_config(kafka_cluster.admin, fresh_topic), spec)
    assert str(refused.value) == (
        f"topic {fresh_topic} exists with retention.ms=604800000, but docker-compose.yml asks"
        f" for retention.ms={THIRTY_DAYS_MS}: run `python -m localcluster down --wipe` to start"
        " over"
    )
    admin.require_config(admin.topic_config(kafka_cluster.admin, DEAD_LETTER_TOPIC), spec)


def test_automatic_topic_creation_is_off(kafka_cluster):
    topic = f"never-created-{uuid.uuid4().hex[:8]}"
    producer = Producer(
        {
            "bootstrap.servers": kafka_cluster.bootstrap,
            "message.timeout.ms": 5000,
            "topic.metadata.propagation.max.ms": 2000,
        }
    )
    errors = []
    producer.produce(topic, b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(15)
    assert len(errors) == 1 and errors[0] is not None, "producing to an unknown topic succeeded"
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._MSG_TIMED_OUT)
    assert topic not in kafka_cluster.admin.list_topics(timeout=10).topics


def test_produced_through_9094_is_consumed_through_9096(kafka_cluster, fresh_topic):
    first, *_, last = kafka_cluster.bootstrap.split(",")  # 9094 and 9096 by default
    value = f"through-{first}-{uuid.uuid4()}".encode()
    assert produce(first, fresh_topic, [value]) == [None]
    assert consume_until(last, fresh_topic, {value}) == {value}


@pytest.mark.parametrize("node_id", [0, 1, 2])
def test_topic_stays_writable_and_readable_with_a_broker_killed(kafka_cluster, node_id):
    values = [f"{node_id}-{i}-{uuid.uuid4()}".encode() for i in range(60)]
    with kafka_cluster.broker_down(node_id):
        assert kafka_cluster.local.node(node_id).pid() is None
        assert produce(kafka_cluster.bootstrap, TOPIC, values) == [None] * len(values)
        consumed = consume_until(kafka_cluster.bootstrap, TOPIC, set(values))
        assert consumed == set(values), "messages acknowledged with a broker down were not read"
    parts = kafka_cluster.wait_full_isr(TOPIC, timeout=60)
    assert all(sorted(p.isr) == sorted(p.replicas) for p in parts)


def test_status_shows_brokers_quorum_leader_and_full_isr(kafka_cluster):
    result = run_cli("status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("│ yes ") == 3, out
    assert "leader " in out and "voters [0, 1, 2]" in out and "leader none" not in out, out
    for line in (line for line in out.splitlines() if line.startswith("│")):
        assert "[red]" not in line
    assert "batch-group" in out and "single-group" in out


def test_status_counts_the_dead_letters_per_partition_and_in_all(kafka_cluster):
    client = kafka_cluster.admin
    before = admin.end_offsets(client, DEAD_LETTER_TOPIC, [0, 1, 2])
    values = [f"dead-{i}-{uuid.uuid4()}".encode() for i in range(3)]
    assert produce(kafka_cluster.bootstrap, DEAD_LETTER_TOPIC, values) == [None] * 3
    starts = admin.start_offsets(client, DEAD_LETTER_TOPIC, [0, 1, 2])
    ends = admin.end_offsets(client, DEAD_LETTER_TOPIC, [0, 1, 2])
    assert sum(ends.values()) == sum(before.values()) + 3  # control: the count moved
    result = run_cli("status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    total = sum(ends[p] - starts[p] for p in ends)
    assert f"Dead-letter topic {DEAD_LETTER_TOPIC}: {total} records" in out, out
    table = out.split(f"Dead-letter topic {DEAD_LETTER_TOPIC}")[1].split("Consumer groups")[0]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table.splitlines()]
    counts = {int(row[0]): row[4:] for row in rows if row and row[0].isdigit()}
    assert counts == {
        p: [str(starts[p]), str(ends[p]), str(ends[p] - starts[p])] for p in (0, 1, 2)
    }, table


def test_status_names_a_missing_dead_letter_topic_in_one_line(kafka_cluster, tmp_path):
    text = (ROOT / "docker-compose.yml").read_text()
    anchor = f"DLQ_TOPIC_NAME: {DEAD_LETTER_TOPIC}"
    assert anchor in text, "mutation anchor not found in docker-compose.yml"
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(text.replace(anchor, "DLQ_TOPIC_NAME: never-created.dlq"))
    result = run_cli("status", env={"LOCALCLUSTER_COMPOSE_FILE": str(copy)})
    assert result.returncode == 1, result.stdout
    assert (
        "\ndead-letter topic never-created.dlq does not exist: `python -m localcluster up`"
        " creates it\n"
    ) in result.stdout, result.stdout
    assert "Topic final-1-topic" in result.stdout and "Consumer groups" in result.stdout


def test_env_and_status_without_the_variable_use_the_offset_up_remembered(kafka_cluster):
    local: LocalCluster = kafka_cluster.local
    remembered = f"port offset {local.port_offset} (remembered in {local.home}/cluster.json)"
    env = run_cli("env", unset=["LOCALCLUSTER_PORT_OFFSET"])
    assert env.returncode == 0, env.stderr
    assert f"export KAFKA_BOOTSTRAP_SERVERS={kafka_cluster.bootstrap}\n" in env.stdout, env.stdout
    assert remembered in env.stdout, env.stdout
    status = run_cli("status", unset=["LOCALCLUSTER_PORT_OFFSET"])
    assert status.returncode == 0, status.stderr
    first = status.stdout.splitlines()[0]
    assert first.startswith(f"Status of the local cluster in {local.home}: bootstrap"), first
    assert kafka_cluster.bootstrap in first and remembered in first, first
    assert status.stdout.count("│ yes ") == 3, status.stdout


def test_another_offset_for_a_running_cluster_is_refused(kafka_cluster):
    """Else `status` would report the cluster's ports as down: another cluster's, unsaid."""
    local: LocalCluster = kafka_cluster.local
    other = local.port_offset + 1
    result = run_cli("status", env={"LOCALCLUSTER_PORT_OFFSET": str(other)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"localcluster: error: LOCALCLUSTER_PORT_OFFSET={other}, but the cluster in {local.home}"
        f" runs with port offset {local.port_offset} (remembered in {local.home}/cluster.json):"
        " unset the variable to use that cluster, or stop it first with"
        " `python -m localcluster down`"
    ]
    assert result.stdout == ""


def free_offset() -> int:
    """A port offset whose EXTERNAL ports are free now, for a cluster home of a test's own."""
    for offset in range(1000, 20000, 97):
        if not any(port_in_use(9094 + n + offset) for n in range(3)):
            return offset
    raise AssertionError("no free port offset")


def own_home(tmp_path: Path) -> dict[str, str]:
    """The environment of a cluster home of a test's own, on EXTERNAL ports free now."""
    offset = str(free_offset())
    return {"LOCALCLUSTER_HOME": str(tmp_path / "home"), "LOCALCLUSTER_PORT_OFFSET": offset}


def up_without_java(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`up` with no java on PATH: it plans and remembers the ports, checks them, and stops
    with one line before any JVM, in a second or so."""
    no_java = tmp_path / "no-java"
    no_java.mkdir(exist_ok=True)
    return run_cli("up", env={**env, "PATH": str(no_java)}, timeout=30)


def test_up_remembers_its_offset_for_later_commands(tmp_path):
    """`up` in a new home with an offset, stopped at the missing java (before any JVM): later
    commands without the variable use that offset, and the variable still wins while nothing
    of that home runs."""
    offset_env = own_home(tmp_path)
    home, offset = tmp_path / "home", int(offset_env["LOCALCLUSTER_PORT_OFFSET"])
    up = up_without_java(offset_env, tmp_path)
    assert "java not found" in up.stderr, up.stderr
    ports = ",".join(f"localhost:{9094 + n + offset}" for n in range(3))
    remembered = f"port offset {offset} (remembered in {home}/cluster.json)"

    later = {"LOCALCLUSTER_HOME": str(home)}
    env = run_cli("env", env=later, unset=["LOCALCLUSTER_PORT_OFFSET"], timeout=30)
    assert env.stdout.splitlines()[1:] == [
        f"export KAFKA_BOOTSTRAP_SERVERS={ports}",
        f"export LOCALCLUSTER_HOME={home}",
    ]
    assert remembered in env.stdout, env.stdout
    status = run_cli("status", env=later, unset=["LOCALCLUSTER_PORT_OFFSET"], timeout=30)
    assert status.stdout.splitlines()[0] == (
        f"Status of the local cluster in {home}: bootstrap {ports}, {remembered}"
    ), status.stdout
    assert status.returncode == 1 and f"cannot reach the cluster at {ports}" in status.stdout

    moved = run_cli("env", env={**offset_env, "LOCALCLUSTER_PORT_OFFSET": "0"}, timeout=30)
    assert "export KAFKA_BOOTSTRAP_SERVERS=localhost:9094,localhost:9095," in moved.stdout


def test_up_names_the_other_local_cluster_holding_its_port(kafka_cluster, tmp_path):
    """A second cluster home would need 9094-9096, which the running cluster holds."""
    port = 9094 + kafka_cluster.local.port_offset
    assert port_in_use(port)
    result = run_cli("up", env={"LOCALCLUSTER_HOME": str(tmp_path / "other")})
    assert result.returncode == 1
    home, pid = kafka_cluster.local.home, kafka_cluster.local.node(0).pid()
    assert f"port {port} (kafka-0 EXTERNAL) is already in use" in result.stderr, result.stderr
    assert f"by kafka-0 of the local cluster in {home} (pid {pid})" in result.stderr
    assert "python -m localcluster down`" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def jvms_of(home: Path) -> str:
    """The processes of the cluster in `home`, as pgrep lists them: empty if none."""
    found = subprocess.run(["pgrep", "-af", f"-Dlocalcluster.node={home}"], capture_output=True)
    return found.stdout.decode().strip()


def held_port() -> socket.socket:
    """A loopback port listened on by this process, the way any other program would hold it."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


def test_up_names_the_pid_and_command_holding_its_port_at_once(tmp_path):
    """Before any setup: no JVM, no storage, a few seconds; then, the port freed, the same
    command gets past the check (to its missing java: a cheap stop before any JVM)."""
    holder = held_port()
    port = holder.getsockname()[1]
    env = {
        "LOCALCLUSTER_HOME": str(tmp_path / "home"),
        "LOCALCLUSTER_PORT_OFFSET": str(port - 9094),
    }
    try:
        started = time.monotonic()
        result = run_cli("up", env=env, timeout=30)
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert result.returncode == 1, result.stderr
    assert elapsed < 10, f"took {elapsed:.1f}s"
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    command = Path("/proc/self/cmdline").read_bytes().split(b"\0")[:3]
    assert f"port {port} (kafka-0 EXTERNAL) is already in use" in line, line
    assert f"by pid {os.getpid()} ({b' '.join(command).decode()}" in line, line
    assert f"`kill {os.getpid()}`" in line and "`LOCALCLUSTER_PORT_OFFSET=" in line, line
    assert jvms_of(tmp_path / "home") == ""
    assert not list((tmp_path / "home").glob("kafka-*/data/meta.properties"))

    control = up_without_java(env, tmp_path)
    assert control.stderr.strip().splitlines() == [
        "localcluster: error: java not found on PATH: Kafka needs Java 17 or newer"
    ]


def test_up_names_the_holder_of_a_remembered_controller_port(tmp_path):
    """The internal and controller ports a home remembers are checked too; a new offset would
    not move them, so the way out is to stop the holder or start the home over."""
    env = own_home(tmp_path)
    up_without_java(env, tmp_path)  # plans and remembers the ports
    port = json.loads((tmp_path / "home" / "cluster.json").read_text())["ports"]["kafka-1:9093"]
    with socket.create_server(("127.0.0.1", port)):
        result = run_cli("up", env=env, timeout=30)
    line = result.stderr.strip()
    assert line.startswith(f"localcluster: error: port {port} (kafka-1 CONTROLLER)"), line
    assert f"by pid {os.getpid()} (" in line, line
    assert "python -m localcluster down --wipe` (deletes its data)" in line, line
    assert "LOCALCLUSTER_PORT_OFFSET=" not in line, line


def proc_net_row(address: str, port: int, state: str, uid: int, inode: int) -> str:
    """A /proc/net/tcp or tcp6 row: the address as 32-bit words in this host's byte order."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    words = struct.unpack(f"!{len(packed) // 4}I", packed)
    native = struct.pack(f"={len(words)}I", *words).hex().upper()
    return f"  0: {native}:{port:04X} 00000000:0000 {state} 0:0 00:0 0 {uid} 0 {inode} 1 0"


def test_holders_are_the_loopback_listeners_with_their_process_where_visible(tmp_path):
    proc, port, header = tmp_path / "proc", 29094, "  sl  local_address ..."
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "tcp").write_text("\n".join([
        header,
        proc_net_row("127.0.0.1", port, "0A", 1234, 701),  # no process of ours has it
        proc_net_row("10.0.0.5", port, "0A", 0, 702),  # not reached through loopback
        proc_net_row("127.0.0.1", port, "01", 0, 703),  # a connection, not a listener
        proc_net_row("127.0.0.1", port + 1, "0A", 0, 706),  # another port
    ]))  # fmt: skip
    (proc / "net" / "tcp6").write_text("\n".join([
        header,
        proc_net_row("::1", port, "0A", 0, 704),
        proc_net_row("::ffff:127.0.0.1", port, "0A", 0, 705),  # how a JVM listens
        proc_net_row("fe80::1", port, "0A", 0, 707),
    ]))  # fmt: skip
    (proc / "4242" / "fd").mkdir(parents=True)
    (proc / "4242" / "fd" / "3").symlink_to("socket:[705]")
    (proc / "4242" / "cmdline").write_bytes(b"java\0-Dlocalcluster.node=/x/kafka-1\0")

    found = holders(port, proc)
    assert found == [
        Holder(1234),
        Holder(0),
        Holder(0, 4242, ("java", "-Dlocalcluster.node=/x/kafka-1")),
    ]
    default_home = Path("/elsewhere")
    who, _ = explain(port, found[:1], default_home)
    assert "uid 1234" in who and who.endswith("that this user cannot see"), who
    assert explain(port, found[2:], default_home) == (
        "kafka-1 of the local cluster in /x (pid 4242)",
        "`LOCALCLUSTER_HOME=/x python -m localcluster down`",
    )
    assert explain(port, found[2:], Path("/x"))[1] == "`python -m localcluster down`"
    assert "cannot name" in explain(port, [], default_home)[0]


def second_cluster(tmp_path: Path, kafka_1_settings: dict[str, str] | None = None) -> dict:
    """The environment of a second local cluster on ports 29094-29096, so that it does not
    clash with the session's; `kafka_1_settings` are extra env vars of its kafka-1."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for n, service in enumerate(["kafka-0", "kafka-1", "kafka-2"]):
        env = compose["services"][service]["environment"]
        port = 29094 + n
        env["KAFKA_LISTENERS"] = env["KAFKA_LISTENERS"].replace(f":{9094 + n}", f":{port}")
        env["KAFKA_ADVERTISED_LISTENERS"] = env["KAFKA_ADVERTISED_LISTENERS"].replace(
            f":{9094 + n}", f":{port}"
        )
    compose["services"]["kafka-1"]["environment"].update(kafka_1_settings or {})
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(compose))
    return {"LOCALCLUSTER_COMPOSE_FILE": str(path), "LOCALCLUSTER_HOME": str(tmp_path / "home")}


def test_broker_dying_on_start_is_started_once_more(kafka_cluster, tmp_path, monkeypatch):
    env = second_cluster(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    kafka_1 = LocalCluster(say=lambda _: None).node(1)
    up = subprocess.Popen(
        [sys.executable, "-m", "localcluster", "up", "--timeout", "90"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The broker's own log begins (KafkaDockerWrapper setup, same marker, does not write it).
        deadline = time.monotonic() + 60
        while kafka_1.log_size() == 0 and up.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = kafka_1.pid()
        assert pid is not None, "kafka-1 was never started"
        os.kill(pid, signal.SIGKILL)  # a crash during start-up
        _, stderr = up.communicate(timeout=150)
        assert up.returncode == 0, stderr
        assert "kafka-1 exited during start-up" in stderr, stderr
        assert "starting it again" in stderr, stderr
        assert kafka_1.alive()
    finally:
        up.kill()
        run_cli("down", "--wipe", "--timeout", "5", env=env)


def test_a_lone_broker_stalled_on_start_is_restarted_once(kafka_cluster, monkeypatch):
    # A restart normally takes 10-25 s here: with a 2 s bound, kafka-1 counts as stalled.
    monkeypatch.setattr(cluster_module, "STALL_BOUND", 2.0)
    said: list[str] = []
    monkeypatch.setattr(kafka_cluster.local, "say", said.append)
    kafka_cluster.kill(1)
    kafka_cluster.start_missing()
    restarts = [line for line in said if "kafka-1 not started after 2 s" in line]
    assert len(restarts) == 1 and "starting it again" in restarts[0], said
    assert kafka_cluster.local.node(1).alive()
    assert sorted(admin.registered_brokers(kafka_cluster.admin)) == [0, 1, 2]


def test_broker_dying_on_start_is_reported_with_its_log(kafka_cluster, tmp_path):
    # Passes `format`, fails when the broker loads it.
    env = second_cluster(tmp_path, {"KAFKA_METRIC_REPORTERS": "no.such.Reporter"})
    try:
        result = run_cli("up", "--timeout", "60", env=env)
        assert result.returncode == 1
        # Started once more, as the restart policy would; a wrong setting fails again.
        assert "kafka-1 exited during start-up, twice" in result.stderr, result.stderr
        assert "no.such.Reporter" in result.stderr, "the log tail should show the cause"
        assert "Traceback" not in result.stderr
    finally:
        run_cli("down", "--wipe", "--timeout", "5", env=env)


# Loopback ports standing for the Docker listeners, fixed so the final properties are too.
FIXED_PORTS = {
    "kafka-0:9092": 20000, "kafka-0:9093": 20001, "kafka-0:9094": 9094,
    "kafka-1:9092": 20002, "kafka-1:9093": 20003, "kafka-1:9095": 9095,
    "kafka-2:9092": 20004, "kafka-2:9093": 20005, "kafka-2:9096": 9096,
}  # fmt: skip
SHARED_PROPERTIES = {
    "auto.create.topics.enable": "false",
    "controller.listener.names": "CONTROLLER",
    "controller.quorum.voters": "0@127.0.0.1:20001,1@127.0.0.1:20003,2@127.0.0.1:20005",
    "default.replication.factor": "2",
    "group.initial.rebalance.delay.ms": "0",
    "inter.broker.listener.name": "INTERNAL",
    "listener.security.protocol.map": "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT,EXTERNAL:PLAINTEXT",
    "min.insync.replicas": "1",
    "num.partitions": "3",
    "offsets.topic.replication.factor": "3",
    "process.roles": "broker,controller",
    "transaction.state.log.min.isr": "2",
    "transaction.state.log.replication.factor": "3",
}


def expected_properties(node_id: int, data_dir: Path) -> dict[str, str]:
    internal, controller, external = 20000 + 2 * node_id, 20001 + 2 * node_id, 9094 + node_id
    return {
        **SHARED_PROPERTIES,
        "node.id": str(node_id),
        "listeners": f"INTERNAL://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{controller},"
        f"EXTERNAL://127.0.0.1:{external}",
        "advertised.listeners": f"INTERNAL://127.0.0.1:{internal},EXTERNAL://localhost:{external}",
        "log.dirs": str(data_dir),
    }


def read_properties(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key: value for key, value in pairs}


@pytest.fixture(scope="module")
def java_and_lib() -> tuple[str, Path]:
    model = compose.load(ROOT / "docker-compose.yml")
    cache = Path(os.environ.get("LOCALCLUSTER_CACHE") or ROOT / ".cache")
    return jars.require_java(), jars.ensure_jars(cache, model.kafka_version, print)


def setup(node: Node, java_and_lib: tuple[str, Path], environment: dict[str, str]) -> None:
    java, lib = java_and_lib
    node.finish_setup(node.begin_setup(java, lib, environment), lib, environment)


def test_wrapper_writes_todays_properties_for_the_compose_brokers(
    java_and_lib, tmp_path, monkeypatch
):
    """Kafka's KafkaDockerWrapper, run on each broker of the real docker-compose.yml with the
    Docker addresses mapped to loopback, writes exactly the properties localcluster's own
    translation gave before it (the fixed set above): the KAFKA_* variables as properties,
    KAFKA_HEAP_OPTS left out, and nothing from the host's environment."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "localhost:9094")  # exported for the apps
    model = compose.load(ROOT / "docker-compose.yml")
    nodes = [Node(broker, tmp_path) for broker in model.brokers]
    java, lib = java_and_lib
    envs = [local_environment(node.broker, FIXED_PORTS, node.data_dir) for node in nodes]
    runs = [node.begin_setup(java, lib, env) for node, env in zip(nodes, envs, strict=True)]
    for node, env, run in zip(nodes, envs, runs, strict=True):
        node.finish_setup(run, lib, env)

    actual = {node.name: read_properties(node.properties_file) for node in nodes}
    expected = {node.name: expected_properties(node.node_id, node.data_dir) for node in nodes}
    assert actual == expected
    assert [node.broker.heap_opts for node in nodes] == [["-Xms512m", "-Xmx512m"]] * 3
    for node in nodes:  # the wrapper formatted the storage with the compose file's CLUSTER_ID
        meta = read_properties(node.data_dir / "meta.properties")
        assert (meta["cluster.id"], meta["node.id"]) == (model.cluster_id, str(node.node_id))
        assert node.setup_current(lib, local_environment(node.broker, FIXED_PORTS, node.data_dir))


def test_wrapper_setup_again_keeps_the_formatted_storage(java_and_lib, tmp_path):
    """A restart with the data kept: the wrapper's format step finds the storage formatted and
    fails, as in the image, whose start-up script lets that pass; so does localcluster."""
    node = Node(compose.load(ROOT / "docker-compose.yml").brokers[0], tmp_path)
    environment = local_environment(node.broker, FIXED_PORTS, node.data_dir)
    setup(node, java_and_lib, environment)
    meta = (node.data_dir / "meta.properties").read_bytes()
    changed = {**environment, "KAFKA_NUM_PARTITIONS": "4"}
    assert not node.setup_current(java_and_lib[1], changed)
    setup(node, java_and_lib, changed)
    assert read_properties(node.properties_file)["num.partitions"] == "4"
    assert (node.data_dir / "meta.properties").read_bytes() == meta
    assert ALREADY_FORMATTED in (node.config_dir / "setup.log").read_text()
    assert node.setup_current(java_and_lib[1], changed)
    node.properties_file.write_text("edited=by hand\n")  # an edited file is written again
    assert not node.setup_current(java_and_lib[1], changed)


def test_wrapper_failure_is_one_clear_line(java_and_lib, tmp_path):
    node = Node(compose.load(ROOT / "docker-compose.yml").brokers[1], tmp_path)
    environment = local_environment(node.broker, FIXED_PORTS, node.data_dir)
    environment["KAFKA_PROCESS_ROLES"] = "broker,bogus"
    with pytest.raises(ClusterError) as failure:
        setup(node, java_and_lib, environment)
    message = str(failure.value)
    assert message.startswith("kafka-1: kafka.docker.KafkaDockerWrapper setup failed: "), message
    assert "Invalid value bogus for configuration process.roles" in message, message
    assert "\n" not in message and "\tat " not in message, message


def test_up_stops_at_a_failed_wrapper_with_one_line(tmp_path):
    env = second_cluster(tmp_path, {"KAFKA_PROCESS_ROLES": "broker,bogus"})
    try:
        result = run_cli("up", "--timeout", "60", env=env)
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("localcluster: error: kafka-1: kafka.docker.KafkaDockerWrapper"), (
            result.stderr
        )
        assert "process.roles" in last and "Traceback" not in result.stderr, result.stderr
        assert "started kafka-" not in result.stderr, "no broker starts on a failed setup"
    finally:
        run_cli("down", "--wipe", "--timeout", "5", env=env)


def test_error_excerpt_is_the_error_records_not_info_lines_naming_an_exception():
    """What the CI saw under load: INFO records that mention an exception came first and
    crowded the cause out of the excerpt."""
    log = [
        "[2026-11-24 00:57:08,401] INFO [QuorumController id=1] registerBroker: event failed"
        " with NotControllerException in 423 microseconds. (org.apache.kafka.controller)",
        "[2026-11-24 00:57:08,500] WARN [RaftManager id=1] Connection to node 2 could not be"
        " established. (org.apache.kafka.clients.NetworkClient)",
        "\tmetric.reporters = [no.such.Reporter]",
        "[2026-11-24 00:57:08,983] ERROR [BrokerServer id=1] Fatal error during broker startup."
        " Prepare to shutdown (kafka.server.BrokerServer)",
        "org.apache.kafka.common.KafkaException: Class no.such.Reporter cannot be found",
        "\tat org.apache.kafka.common.utils.Utils.newInstance(Utils.java:396)",
        "Caused by: java.lang.ClassNotFoundException: no.such.Reporter",
        "\t... 20 more",
        "",
        "[2026-11-24 00:57:09,010] INFO [SocketServer nodeId=1] Stopping (kafka.network)",
        "[2026-11-24 00:57:09,024] FATAL Encountered fatal fault (org.apache.kafka.server)",
    ]
    assert error_lines(log) == [log[3], log[4], log[6], log[10]]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            KafkaException(KafkaError(KafkaError.NOT_COORDINATOR)),
            "the group coordinator is not ready yet (NOT_COORDINATOR)",
        ),
        (KafkaException(KafkaError(KafkaError._TIMED_OUT)), "no answer in time (_TIMED_OUT)"),
        (  # a code without words of its own keeps the broker's message
            KafkaException(KafkaError(KafkaError.INVALID_REPLICATION_FACTOR, "only 1 broker")),
            "only 1 broker (INVALID_REPLICATION_FACTOR)",
        ),
        (TimeoutError(), "no answer in time (TimeoutError)"),
    ],
)
def test_wait_reasons_are_words_with_the_error_name(error, expected):
    if isinstance(error, KafkaException):  # the raw text that the words replace
        assert str(error.args[0]).startswith("KafkaError{code=")
    assert admin.wait_error(error) == expected


def test_missing_java_is_one_clear_line(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("mvn",):  # everything but java
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    result = run_cli("up", env={**own_home(tmp_path), "PATH": str(bin_dir)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "localcluster: error: java not found on PATH: Kafka needs Java 17 or newer"
    ]


def test_down_leaves_no_java_process_and_no_port(kafka_cluster):
    """Runs `down` on the session's cluster, checks it, then brings it back for later tests."""
    local: LocalCluster = kafka_cluster.local
    ports = sorted(set(local.ports().values()))
    result = run_cli("down")
    assert result.returncode == 0, result.stderr
    try:
        assert [node.name for node in local.nodes if node.pid() is not None] == []
        busy = [port for port in ports if port_in_use(port)]
        assert busy == [], f"ports still listening after down: {busy}"
        assert jvms_of(local.home) == ""
    finally:
        local.up()
    assert kafka_cluster.wait_full_isr(TOPIC, timeout=60)


def test_the_acls_file_is_kafka_acls_options_and_a_wrong_line_is_named(tmp_path: Path) -> None:
    from confluent_kafka.admin import AclOperation, ResourceType

    from localcluster import acls

    bindings = acls.load(ROOT / "secure" / "acls.conf")
    producer = {
        (b.restype, b.name, b.operation) for b in bindings if b.principal == "User:producer"
    }
    assert producer == {
        (ResourceType.TOPIC, "final-1-topic", AclOperation.WRITE),
        (ResourceType.TOPIC, "final-1-topic", AclOperation.DESCRIBE),
    }
    ui = {b.operation for b in bindings if b.principal == "User:kafka-ui"}
    assert AclOperation.WRITE not in ui and AclOperation.DESCRIBE_CONFIGS in ui
    wrong = tmp_path / "acls.conf"
    wrong.write_text("# a comment\n--allow-principal User:x --operation Wrte --topic t\n")
    with pytest.raises(ClusterError, match=r"acls.conf:2: unknown operation 'Wrte'"):
        acls.load(wrong)
    wrong.write_text("--allow-principal User:x --topic t\n")
    with pytest.raises(ClusterError, match=r"acls.conf:1: .*--operation"):
        acls.load(wrong)


def test_secrets_are_private_complete_and_never_overwritten(tmp_path: Path) -> None:
    from cryptography import x509

    from localcluster import secrets

    folder = tmp_path / "secrets"
    written = secrets.generate(folder)
    assert "broker.pem" in written and secrets.generate(folder) == []
    for path in folder.iterdir():
        private = path.name != "ca.pem"
        assert (path.stat().st_mode & 0o077 == 0) == private, path.name
    pem = (folder / "broker.pem").read_text()
    assert "BEGIN PRIVATE KEY" in pem  # PKCS#8: Kafka's PEM keystore reads no other
    names = x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert set(names.value.get_values_for_type(x509.DNSName)) == {
        "kafka-0", "kafka-1", "kafka-2", "localhost"
    }  # fmt: skip
    passwords = secrets.passwords(folder)
    assert len(set(passwords.values())) == len(secrets.PRINCIPALS)
    args = (folder / "scram-format.args").read_text()
    assert all(f"name={p},password={passwords[p]}]" in args for p in secrets.PRINCIPALS)
