"""The secured profile (docker-compose.secure.yml) as local JVMs: SASL_SSL with SCRAM-SHA-512,
TLS with the brokers' names checked, StandardAuthorizer, and the ACLs of secure/acls.conf.

The module runs a cluster of its own (`python -m localcluster up --secure` in a temporary home,
EXTERNAL ports +400) beside the session's plaintext one, and stops it at the end.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from localcluster import acls, admin, secrets
from localcluster.cluster import ROOT, LocalCluster
from support.kafka_init import kafka_init
from support.processes import Apps, app_env, run_script
from support.records import read_records
from support.waits import wait_until

pytestmark = pytest.mark.cluster
SECRETS = ROOT / "secrets"
SECURE_COMPOSE = ROOT / "docker-compose.secure.yml"
TOPIC, DLQ = "final-1-topic", "final-1-topic.dlq"
GROUPS = {"batch": "batch-group", "single": "single-group"}
QUIET = logging.getLogger("test_secure.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
# The ApiVersions v0 request the compose healthcheck sends (correlation id 1, client id "hc").
API_VERSIONS = b"\0\0\0\x0c\0\x12\0\0\0\0\0\x01\0\x02hc"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    home = tmp_path_factory.mktemp("secured-cluster")
    saved = {
        name: os.environ.get(name) for name in ("LOCALCLUSTER_HOME", "LOCALCLUSTER_PORT_OFFSET")
    }
    os.environ.update(LOCALCLUSTER_HOME=str(home), LOCALCLUSTER_PORT_OFFSET="400")
    try:
        cluster = LocalCluster(
            say=lambda m: print(f"secured cluster: {m}", file=sys.stderr), secure=True
        )
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.update({name: value})
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.down(wipe=True)


def password(principal: str) -> str:
    return (SECRETS / f"{principal}.password").read_text().strip()


def login(principal: str) -> dict[str, str]:
    return secrets.client_variables(principal, SECRETS)


def client(secured: LocalCluster, principal: str | None, secret: str = "", **extra) -> dict:
    """A librdkafka config: as ``principal`` over SASL_SSL (with its password, or ``secret``),
    or plaintext with None."""
    config = {"bootstrap.servers": secured.bootstrap, "error_cb": lambda _e: None, **extra}
    config["logger"] = QUIET  # the refused clients' retries would fill the test's output
    if principal:
        config |= {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": principal,
            "sasl.password": secret or password(principal),
            "ssl.ca.location": str(SECRETS / "ca.pem"),
        }
    return config


def write_one(config: dict) -> list:
    """The delivery report's error of one record written with ``config`` (None: written)."""
    reports: list = []
    writer = Producer({**config, "message.timeout.ms": 3000})
    writer.produce(TOPIC, b"x", key=b"stranger", on_delivery=lambda err, _m: reports.append(err))
    writer.flush(10)
    return reports


def end_offsets(secured: LocalCluster, topic: str) -> dict[int, int]:
    return admin.end_offsets(secured.admin(), topic, [0, 1, 2])


def test_the_secured_demo_delivers_commits_and_dead_letters(secured: LocalCluster, tmp_path):
    with Apps(tmp_path, secured.bootstrap) as apps:
        producers = [
            apps.start("producer.py", f"producer-{n}", TOPIC, "--interval", 0, "--count", 100,
                       "--delivered-log", tmp_path / f"producer-{n}.acked", **login("producer"))
            for n in (1, 2)
        ]  # fmt: skip
        for app in producers:
            assert app.wait(60) == 0, app.tail()
        poison = Producer(client(secured, "producer"))
        poison.produce(TOPIC, b"not a MessageModel", key=b"poison-1")
        assert poison.flush(15) == 0
        consumers = [
            apps.start(f"{kind}_message_consumer.py", kind, TOPIC, "--group-id", group,
                       "--processed-log", tmp_path / f"{kind}.processed", "--idle-exit", 8,
                       **login(f"{kind}-consumer"))
            for kind, group in GROUPS.items()
        ]  # fmt: skip
        for app in consumers:
            assert app.wait(120) == 0, app.tail()
    acked = {r[2] for n in (1, 2) for r in read_records(tmp_path / f"producer-{n}.acked")}
    assert len(acked) == 200
    ends = end_offsets(secured, TOPIC)
    for kind, group in GROUPS.items():
        processed = {r[2] for r in read_records(tmp_path / f"{kind}.processed")}
        assert acked <= processed, f"{kind}: {len(acked - processed)} acknowledged not processed"
        assert "-" in processed, f"{kind}: the poison record was not dead-lettered"
        committed = admin.committed_offsets(
            secured.bootstrap, group, TOPIC, security=secured.security
        )
        assert committed == ends, f"{kind}: {group} committed {committed}, the ends are {ends}"
    assert dead_letter_groups(secured) == sorted(GROUPS.values())
    assert_no_password_logged([tmp_path, secured.home])


def dead_letter_groups(secured: LocalCluster) -> list[str]:
    """The group header of every dead letter of the poison record, read as the admin."""
    settings = {"group.id": f"read-{uuid.uuid4()}", "enable.auto.commit": False}
    reader = Consumer(client(secured, "admin", **settings))
    reader.assign([TopicPartition(DLQ, p, 0) for p in range(3)])
    groups, deadline = [], time.monotonic() + 20
    while len(groups) < 2 and time.monotonic() < deadline:
        msg = reader.poll(1)
        if msg is not None and not msg.error() and msg.key() == b"poison-1":
            groups.append(dict(msg.headers())["kafka_dlt-original-consumer-group"].decode())
    reader.close()
    return sorted(groups)


def assert_no_password_logged(folders: list[Path]) -> None:
    """No log of an app or a broker holds any principal's password. (server.properties must
    hold the brokers': it shows the search finds one where there is one.)"""
    known = {p.stem: p.read_text().strip() for p in SECRETS.glob("*.password")}
    assert set(secrets.PRINCIPALS) <= known.keys(), known.keys()
    assert all(len(s) == 32 for s in known.values()), known.keys()
    logs = [f for folder in folders for f in folder.rglob("*.log") if f.is_file()]
    assert len(logs) >= 5, logs  # 2 producers, 2 consumers, 3 brokers at least
    for log in logs:
        text = log.read_text(errors="replace")
        leaked = [name for name, secret in known.items() if secret in text]
        assert not leaked, f"{log} holds the password of {leaked}"
    properties = next(folders[-1].rglob("server.properties")).read_text()
    assert known["broker"] in properties, "the search would not find a password"


def test_unauthenticated_clients_can_neither_list_read_nor_write(secured: LocalCluster):
    before = end_offsets(secured, TOPIC)
    strangers = {
        "plaintext": client(secured, None),
        "wrong password": client(secured, "producer", secret="not-the-password"),
    }
    for who, config in strangers.items():
        with pytest.raises(KafkaException):  # list
            AdminClient(config).list_topics(timeout=3)
        refused = write_one(config)
        assert len(refused) == 1 and refused[0] is not None, f"{who}: a write was acknowledged"
        reader = Consumer({**config, "group.id": "batch-group"})
        reader.assign([TopicPartition(TOPIC, p, 0) for p in range(3)])
        got = [m for m in (reader.poll(0.5) for _ in range(6)) if m is not None and not m.error()]
        reader.close()
        assert got == [], f"{who}: read {len(got)} records"
    assert end_offsets(secured, TOPIC) == before
    # The control: the same write with the producer's own password is acknowledged.
    assert write_one(client(secured, "producer")) == [None]
    assert end_offsets(secured, TOPIC) != before


def api_versions(port: int, tls: bool) -> bytes:
    """The first 10 bytes of the answer to the healthcheck's ApiVersions request."""
    with socket.create_connection(("localhost", port), timeout=5) as raw:
        conn = raw
        if tls:
            context = ssl.create_default_context(cafile=str(SECRETS / "ca.pem"))
            conn = context.wrap_socket(raw, server_hostname="localhost")
        conn.sendall(API_VERSIONS)
        answer = b""
        try:
            while len(answer) < 10 and (chunk := conn.recv(10 - len(answer))):
                answer += chunk
        except (ConnectionError, TimeoutError, ssl.SSLError):
            pass
        return answer


def test_no_published_port_answers_plaintext(secured: LocalCluster):
    for address in secured.bootstrap.split(","):
        port = int(address.rpartition(":")[2])
        assert api_versions(port, tls=False)[4:10] != b"\0\0\0\x01\0\0", f"{port} answered"
        # The control: the same request over TLS, with the brokers' names checked, is answered.
        answer = api_versions(port, tls=True)
        assert struct.unpack(">ih", answer[4:10]) == (1, 0), f"{port}: {answer!r}"


# --- each refusal: one line naming what is wrong, and an exit, within 30 s ---------------------


def run(script: str, *args: object, env: dict) -> tuple[int, float, str]:
    """Run a script to its end: its exit status, seconds taken, and its log."""
    started = time.monotonic()
    result = run_script(script, *args, env=env, timeout=60)
    return result.returncode, time.monotonic() - started, result.stderr


def secured_env(secured: LocalCluster, principal: str, **changes: str) -> dict:
    return app_env(secured.bootstrap, TOPIC, **{**login(principal), **changes})


def other_ca(tmp_path: Path) -> Path:
    path = tmp_path / "other-ca.pem"
    path.write_bytes(trustme.CA().cert_pem.bytes())
    return path


@pytest.fixture
def acl(secured: LocalCluster) -> Iterator[Callable[[str], None]]:
    """Grant a line of secure/acls.conf's kind for the test's time."""
    granted = []

    def grant(line: str) -> None:
        path = secured.home / f"acl-{uuid.uuid4().hex[:6]}.conf"
        path.write_text(line + "\n")
        bindings = acls.load(path)
        admin.create_acls(secured.admin(), bindings)
        granted.extend(bindings)
        time.sleep(1)  # ACLs reach every broker asynchronously

    yield grant
    if granted:
        filters = [
            AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host,
                             b.operation, b.permission_type)
            for b in granted
        ]  # fmt: skip
        client = secured.admin()  # held until the answers came: a dropped one cancels them
        for future in client.delete_acls(filters).values():
            future.result(timeout=10)


REFUSALS = {  # case: (principal, script, variables changed, exit status, the line)
    "wrong password": (
        "producer", "producer.py", {"KAFKA_SASL_PASSWORD_FILE": "WRONG"}, 2,
        "The cluster refused the login of producer",
    ),
    "unknown user": (
        "nobody", "batch_message_consumer.py", {"KAFKA_SASL_PASSWORD_FILE": "WRONG"}, 2,
        "The cluster refused the login of nobody",
    ),
    "untrusted CA": (
        "producer", "producer.py", {"KAFKA_SSL_CA_LOCATION": "OTHER_CA"}, 2,
        "The brokers' certificate cannot be trusted",
    ),
    "plaintext client, TLS listener": (
        "producer", "single_message_consumer.py", {"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, 2,
        "The brokers close the connection at the first request",
    ),
    "producer without Write on the topic": (
        "batch-consumer", "producer.py", {}, 1,
        "batch-consumer may not Write topic final-1-topic",
    ),
    "idempotent producer with Write on no topic": (
        "kafka-ui", "producer.py", {}, 1, "kafka-ui may not start an idempotent producer",
    ),
    "consumer without Read in its group": (
        "kafka-ui", "batch_message_consumer.py", {}, 1,
        "kafka-ui may not read in group batch-group",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS)
def test_each_refusal_is_one_line_and_an_exit_within_30_s(secured, tmp_path, case) -> None:
    principal, script, changes, status, line = REFUSALS[case]
    (tmp_path / "wrong").write_text("not-the-password\n")
    paths = {"WRONG": str(tmp_path / "wrong"), "OTHER_CA": str(other_ca(tmp_path))}
    env = secured_env(secured, principal, **{k: paths.get(v, v) for k, v in changes.items()})
    if principal == "nobody":
        env["KAFKA_SASL_USERNAME"] = "nobody"
    args = ["--count", 3, "--interval", 0] if script == "producer.py" else ["--idle-exit", 40]
    code, seconds, log = run(script, *args, env=env)
    assert line in log, log[-2000:]
    assert code == status, log[-2000:]
    assert seconds < 30, f"{case}: {seconds:.1f} s"
    said = next(text for text in log.splitlines() if line in text)
    print(f"REFUSAL {case}: exit {code} in {seconds:.1f} s: {said}")


def test_a_tls_client_on_a_plaintext_listener_is_told(secured, kafka_cluster, tmp_path) -> None:
    env = {**secured_env(secured, "producer"), "KAFKA_BOOTSTRAP_SERVERS": kafka_cluster.bootstrap}
    code, seconds, log = run("producer.py", "--count", 1, env=env)
    assert "The brokers' listener is plaintext, but this client speaks TLS" in log, log[-2000:]
    assert code == 2 and seconds < 30, (code, seconds)


def test_a_name_the_certificate_lacks_is_refused(secured, tmp_path) -> None:
    """``127.1`` reaches the loopback listeners (glibc reads it as 127.0.0.1), but it is a name
    no SAN holds: librdkafka checks the bootstrap servers' names as given (not IP literals)."""
    ports = [address.rpartition(":")[2] for address in secured.bootstrap.split(",")]
    elsewhere = ",".join(f"127.1:{port}" for port in ports)
    env = {**secured_env(secured, "producer"), "KAFKA_BOOTSTRAP_SERVERS": elsewhere}
    code, seconds, log = run("producer.py", "--count", 1, env=env)
    assert "The brokers' certificate cannot be trusted" in log, log[-2000:]
    assert code == 2 and seconds < 30, (code, seconds)
    said = next(text for text in log.splitlines() if "cannot be trusted" in text)
    print(f"REFUSAL name not in the certificate: exit {code} in {seconds:.1f} s: {said}")
    # The control: the same ports by a name the certificate holds.
    assert run("producer.py", "--count", 1, env=secured_env(secured, "producer"))[0] == 0


def test_a_consumer_without_read_on_the_topic_stops(secured, acl, tmp_path) -> None:
    acl("--allow-principal User:producer --operation Read --group no-topic-read")
    env = secured_env(secured, "producer")
    code, seconds, log = run(
        "batch_message_consumer.py", "--group-id", "no-topic-read", "--idle-exit", 40, env=env
    )
    assert "producer may not Read topic final-1-topic" in log, log[-2000:]
    assert code == 1 and seconds < 30, (code, seconds)


def test_a_consumer_denied_the_dead_letter_topic_never_commits_past_the_record(
    secured, acl, tmp_path
) -> None:
    acl("--allow-principal User:producer --operation Read --topic final-1-topic")
    acl("--allow-principal User:producer --operation Read --group dlq-denied")
    writer = Producer(client(secured, "producer"))
    reports: list = []
    writer.produce(TOPIC, b"poison", key=b"dlq-denied", partition=0,
                   on_delivery=lambda err, msg: reports.append((err, msg.offset())))  # fmt: skip
    writer.flush(15)
    [(error, poison_at)] = reports
    assert error is None
    env = secured_env(secured, "producer")
    with Apps(tmp_path, secured.bootstrap) as apps:
        consumer = apps.launch("single_message_consumer.py", "denied", "--group-id",
                               "dlq-denied", "--max-attempts", 1, env=env)  # fmt: skip
        refused = "Topic authorization failed"
        wait_until(lambda: refused in consumer.log(), 30, "a refused dead letter", [consumer])
        time.sleep(3)  # it retries with backoff, and commits nothing past the record
        assert consumer.stop() == 0, consumer.tail()
    lines = consumer.log().splitlines()
    line = next(text for text in lines if "Cannot write the dead letter" in text)
    assert "final-1-topic.dlq: Broker: Topic authorization failed" in line, line
    assert "Not committed past it; will retry" in line
    committed = admin.committed_offsets(
        secured.bootstrap, "dlq-denied", TOPIC, security=secured.security
    )
    assert committed.get(0, 0) <= poison_at, (committed, poison_at)


def keys_in(secured: LocalCluster, topic: str) -> set[str]:
    """Every key in ``topic`` up to its end offsets now, read as the admin."""
    ends = end_offsets(secured, topic)
    settings = {"group.id": f"read-{uuid.uuid4()}", "enable.auto.commit": False}
    reader = Consumer(client(secured, "admin", **settings))
    reader.assign([TopicPartition(topic, p, 0) for p in ends])
    keys, left, deadline = set(), {p: e for p, e in ends.items() if e > 0}, time.monotonic() + 60
    while left and time.monotonic() < deadline:
        for msg in reader.consume(1000, timeout=1):
            if msg.error() is None:
                keys.add((msg.key() or b"").decode())
                if msg.offset() + 1 >= left.get(msg.partition(), 0):
                    left.pop(msg.partition(), None)
    reader.close()
    assert not left, f"not read to the end: {left}"
    return keys


def test_a_broker_sigkill_during_secured_traffic_loses_nothing_acknowledged(secured, tmp_path):
    acked_file = tmp_path / "kill.acked"
    victim = admin.topic_partitions(secured.admin(), TOPIC)[0].leader
    with Apps(tmp_path, secured.bootstrap) as apps:
        producer = apps.start(
            "producer.py", "kill-producer", TOPIC, "--interval", 0.002, "--quiet",
            "--count", 6000, "--delivered-log", acked_file, **login("producer"),
        )  # fmt: skip
        acks = lambda: len(read_records(acked_file))  # noqa: E731
        wait_until(lambda: acks() >= 500, 60, "500 acks before the kill", [producer])
        secured.kill(victim)
        at_kill = acks()
        wait_until(lambda: acks() > at_kill + 300, 90, "300 acks with a broker dead", [producer])
        secured.up()
        assert producer.wait(180) == 0, producer.tail()
    acked = {message_id for _, _, message_id in read_records(acked_file)}
    lost = acked - keys_in(secured, TOPIC)
    print(f"FIGURES secured-broker-{victim}-killed: acked={len(acked)} lost={len(lost)}")
    assert len(acked) == 6000 and not lost, f"{len(lost)} acknowledged, not in the topic"


def test_status_reads_the_secured_cluster_as_its_admin(secured) -> None:
    """`make status` needs no flag: the home remembers the profile, and Kafka's quorum tool gets
    the admin's login from a private file, not from its command line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALCLUSTER_", "KAFKA_"))}
    env["LOCALCLUSTER_HOME"] = str(secured.home)
    result = subprocess.run(
        [sys.executable, "-m", "localcluster", "status"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    assert out.count("│ yes ") == 3 and "voters [0, 1, 2]" in out, out
    assert "batch-group" in out and "leader none" not in out, out
    login = secured.home / "admin-tools.properties"
    assert login.stat().st_mode & 0o077 == 0 and password("admin") in login.read_text()


# --- the Docker path's pieces, run here: its healthcheck and kafka-init --------------------------


def broker_health(port: int) -> int:
    """The exit status of the secured brokers' compose healthcheck (secure/broker-health)."""
    command = ["bash", str(ROOT / "secure" / "broker-health"), "localhost", str(port)]
    return subprocess.run(command, capture_output=True, timeout=15, check=False).returncode


def test_the_secured_healthcheck_passes_on_tls_listeners_only(secured, kafka_cluster) -> None:
    ports = [int(address.rpartition(":")[2]) for address in secured.bootstrap.split(",")]
    assert [broker_health(port) for port in ports] == [0, 0, 0]
    # Controls: a plaintext listener (the session's cluster) and a closed port fail it.
    plaintext = int(kafka_cluster.bootstrap.split(",")[0].rpartition(":")[2])
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    assert broker_health(plaintext) != 0 and broker_health(closed) != 0


def acl_key(binding) -> tuple:
    return (binding.restype, binding.name, binding.resource_pattern_type, binding.principal,
            binding.host, binding.operation, binding.permission_type)  # fmt: skip


def all_acls(secured: LocalCluster) -> set[tuple]:
    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)  # fmt: skip
    client = secured.admin()  # held until the answer came: a dropped one cancels it
    return {acl_key(binding) for binding in client.describe_acls(every).result(timeout=30)}


def test_kafka_init_of_the_secured_override_logs_in_and_grants_the_acls(secured, tmp_path):
    """The merged kafka-init command, with Kafka's own AclCommand reading secure/acls.conf as
    Docker runs it; a line for a new principal shows that it grants, not only that it runs."""
    command, env = kafka_init(secured.bootstrap, secured.lib(), tmp_path, SECURE_COMPOSE)
    topic = f"test-secure-init-{uuid.uuid4().hex[:8]}"
    extra = f"--allow-principal User:{topic} --operation Read --topic {topic}"
    acls_file = tmp_path / "acls.conf"
    acls_file.write_text((ROOT / "secure" / "acls.conf").read_text() + extra + "\n")
    wanted = {acl_key(binding) for binding in acls.load(acls_file)}
    lines = sum(1 for line in acls_file.read_text().splitlines() if line.startswith("--"))
    login_file = secured.tool_login()[1]
    env.update(TOPIC_NAME=topic, DLQ_TOPIC_NAME=f"{topic}.dlq", ADMIN_PROPERTIES=login_file,
               ACLS_FILE=str(acls_file))  # fmt: skip
    assert not wanted <= all_acls(secured), "the control: the new principal's ACL is not there"
    for run in ("first", "again"):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{run}: {result.stdout}{result.stderr}"
        assert f"granted the {lines} ACL lines of {acls_file}" in result.stdout, result.stdout
        assert result.stdout.count("Topic: ") >= 2, result.stdout  # both topics described
    wait_until(lambda: wanted <= all_acls(secured), 30, "kafka-init's ACLs on the brokers")


# --- the redrive, a new user, a new password ----------------------------------------------------


def test_the_redrive_principal_lists_and_redrives_what_others_may_not(secured, tmp_path):
    poison = Producer(client(secured, "producer"))
    key = f"poison-{uuid.uuid4().hex[:8]}".encode()
    poison.produce(TOPIC, b"not a MessageModel", key=key)
    assert poison.flush(15) == 0
    single = run("single_message_consumer.py", "--group-id", GROUPS["single"], "--idle-exit", 8,
                 env=secured_env(secured, "single-consumer"))  # fmt: skip
    assert single[0] == 0, single[2]
    before = sum(end_offsets(secured, TOPIC).values())

    listed = run_script("dead_letters.py", "list", env=secured_env(secured, "redrive"), timeout=60)
    assert listed.returncode == 0 and "group single-group" in listed.stdout, listed.stderr
    code, _, log = run("dead_letters.py", "redrive", env=secured_env(secured, "redrive"))
    assert code == 0, log
    assert sum(end_offsets(secured, TOPIC).values()) > before, "nothing republished"
    # The controls: the producer may not read the dead letters, the redrive no other group.
    code, _, log = run("dead_letters.py", "redrive", env=secured_env(secured, "producer"))
    assert code != 0 and "Topic authorization failed" in log, log
    other = run("dead_letters.py", "redrive", "--group", "elsewhere",
                env=secured_env(secured, "redrive"))  # fmt: skip
    assert other[0] != 0 and "elsewhere" in other[2], other[2]


def localcluster_cli(secured: LocalCluster, *args: object) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALCLUSTER_", "KAFKA_"))}
    env["LOCALCLUSTER_HOME"] = str(secured.home)
    command = [sys.executable, "-m", "localcluster", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)


def test_a_new_user_gets_its_acls_then_a_new_password_and_nothing_is_lost(secured, tmp_path):
    """README.md, "Secure it": add a user, grant its ACLs, rotate its password while it writes.
    The running producer keeps its logged-in connections; the old password opens no new one."""
    name = f"writer-{uuid.uuid4().hex[:6]}"
    lines = tmp_path / "writer.acls"
    lines.write_text(f"--allow-principal User:{name} --operation Write --topic {TOPIC}\n")
    stale = tmp_path / "stale.password"

    def one_record(password_file: Path) -> tuple[int, float, str]:
        variables = {**login(name), "KAFKA_SASL_PASSWORD_FILE": str(password_file)}
        return run("producer.py", "--count", 1, env=secured_env(secured, name, **variables))

    stale.write_text("not yet\n")
    code, _, log = one_record(stale)  # the control: no such user yet
    assert code == 2 and f"refused the login of {name}" in log, log
    try:
        added = localcluster_cli(secured, "user", name, "--acls", lines)
        assert added.returncode == 0 and "granted the 1 ACLs" in added.stderr, added.stderr
        old = password(name)
        acked_file = tmp_path / "writer.acked"
        with Apps(tmp_path, secured.bootstrap) as apps:
            writer = apps.start(
                "producer.py", name, TOPIC, "--interval", 0.005, "--quiet", "--count", 2000,
                "--delivered-log", acked_file, **login(name),
            )  # fmt: skip
            acks = lambda: len(read_records(acked_file))  # noqa: E731
            wait_until(lambda: acks() >= 300, 60, "300 acks before the new password", [writer])
            rotated = localcluster_cli(secured, "user", name, "--new-password")
            assert rotated.returncode == 0, rotated.stderr
            assert password(name) != old
            time.sleep(2)  # credentials reach every broker asynchronously
            stale.write_text(old + "\n")
            code, _, log = one_record(stale)
            assert code == 2 and f"refused the login of {name}" in log, "the old one works"
            code, _, log = one_record(SECRETS / f"{name}.password")
            assert code == 0, f"the new password does not work: {log}"
            assert writer.wait(120) == 0, writer.tail()
        acked = {message_id for _, _, message_id in read_records(acked_file)}
        lost = acked - keys_in(secured, TOPIC)
        print(f"FIGURES secured-rotation: acked={len(acked)} lost={len(lost)}")
        assert len(acked) == 2000 and not lost, f"{len(lost)} acknowledged, not in the topic"
        assert old not in rotated.stderr + rotated.stdout and password(name) not in rotated.stderr
    finally:
        (SECRETS / f"{name}.password").unlink(missing_ok=True)
