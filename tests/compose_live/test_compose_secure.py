"""The secured override, live: `docker compose -f docker-compose.yml -f docker-compose.secure.yml`
under a real engine, with the images of `python -m standins` and the secrets of
`python -m localcluster secrets`.

One stack (project kafka-python-demo-secure), after the plaintext one is gone: the brokers get
healthy through the TLS healthcheck, kafka-init logs in and grants the ACLs, each app logs in as
its own principal and delivers or commits, and all of it again after a down and up on the same
volumes. No log line holds a password or a SCRAM key. Kafka UI is left out: its image cannot be
pulled here, so its secured settings are only parse-checked (tests/test_compose.py).
"""

from __future__ import annotations

import datetime
import socket
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kafka_app import settings
from localcluster import admin, secrets
from localcluster.nodes import port_in_use
from standins import images
from standins.__main__ import ensure_all
from support.metrics import WORK_COUNTERS, samples

from .stack import COMPOSE_FILE, ROOT, Stack, timestamp
from .test_compose_up import BOOTSTRAP, BROKERS, EXTERNAL_PORTS, SEED_LINES, healthy, skip_or_fail

pytestmark = pytest.mark.compose

PROJECT = "kafka-python-demo-secure"
SECURE_FILE = ROOT / "docker-compose.secure.yml"
SECRETS = ROOT / "secrets"
TOPIC = "final-1-topic"
APPS = ["producer", "batch-consumer", "single-consumer"]
GROUPS = ["batch-group", "single-group"]
SERVICES = ["secrets", *BROKERS, "kafka-init", *APPS]


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    started = time.monotonic()

    def say(message: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"compose-secure [{time.monotonic() - started:6.1f}s] {message}", flush=True)

    if problem := images.engine_problem():
        skip_or_fail(f"{problem} (.ci/run starts one)")
    if busy := [port for port in EXTERNAL_PORTS.values() if port_in_use(port)]:
        skip_or_fail(f"ports {busy} are taken (a local cluster? `make down` stops it)")
    ensure_all(say)
    if written := secrets.generate(SECRETS):
        say(f"wrote {', '.join(written)} in {SECRETS.relative_to(ROOT)}")
    stack = Stack(PROJECT, say, files=(COMPOSE_FILE, SECURE_FILE))
    stack.compose("down", "--volumes", "--remove-orphans", timeout=300)  # an interrupted run's
    try:
        stack.compose("build", timeout=900)
        say(f"up -d {' '.join(SERVICES)}")
        stack.compose("up", "--detach", *SERVICES, timeout=600)
        yield stack
    finally:
        log = ROOT / "build" / "compose-secure.log"
        log.parent.mkdir(exist_ok=True)
        try:
            log.write_text(stack.compose("logs", "--no-color", "--timestamps", timeout=120))
        finally:
            stack.compose("down", "--volumes", "--remove-orphans", timeout=300)
            say(f"stack removed; its logs are in {log.relative_to(ROOT)}")


def admin_login() -> dict[str, str]:
    """The admin's librdkafka login to the stack's published ports, with this folder's CA."""
    return settings.security_settings(secrets.client_variables(secrets.ADMIN, SECRETS))


def committed(group: str) -> dict[int, int]:
    return admin.committed_offsets(BOOTSTRAP, group, TOPIC, timeout=15, security=admin_login())


def work_done(stack: Stack) -> dict[str, float]:
    """Each app replica's work counter (delivered, or processed and committed), from /metrics."""
    done = {}
    for service in APPS:
        for container in stack.containers(service):
            found = samples(stack.scrape(container))
            done[container.name] = found.get(WORK_COUNTERS[service], 0.0)
    return done


def kafka_init_log(stack: Stack) -> tuple[int, str]:
    stack.wait(
        lambda: all(c.state["Status"] == "exited" for c in stack.containers("kafka-init")),
        180,
        "kafka-init to exit",
    )
    (init,) = stack.containers("kafka-init")
    return init.state["ExitCode"], "\n".join(text for _, _, text in stack.logs("kafka-init"))


def test_secured_brokers_get_healthy_through_the_tls_healthcheck(stack: Stack) -> None:
    took = stack.wait(lambda: all(healthy(stack, b) for b in BROKERS), 300, "3 healthy brokers")
    probes: list[float] = []
    for broker in BROKERS:
        for container in stack.containers(broker):
            for probe in stack.inspect(container)["State"]["Health"]["Log"]:
                spent = timestamp(probe["End"]) - timestamp(probe["Start"])
                probes.append(spent.total_seconds() * 1000)
    median, most = statistics.median(probes), max(probes)
    stack.say(f"FIGURES compose-secure: healthy_s={took:.1f} probe_ms_median={median:.1f}"
              f" probe_ms_max={most:.1f} probes={len(probes)}")  # fmt: skip


def test_published_ports_do_not_answer_plaintext(stack: Stack) -> None:
    """The ApiVersions request the plaintext healthcheck sends gets no Kafka answer."""
    for port in EXTERNAL_PORTS.values():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.settimeout(5)
            conn.sendall(b"\0\0\0\x0c\0\x12\0\0\0\0\0\x01\0\x02hc")
            try:
                answer = conn.recv(10)
            except (ConnectionError, TimeoutError):
                answer = b""
        assert answer[4:10] != b"\0\0\0\x01\0\0", f"{port} answered plaintext"
    # The control: the admin, logged in over TLS, is answered by all three.
    client = admin.admin_client(BOOTSTRAP, admin_login())
    assert sorted(client.list_topics(timeout=30).brokers) == [0, 1, 2]


def test_kafka_init_logs_in_and_grants_every_acl_line(stack: Stack) -> None:
    code, log = kafka_init_log(stack)
    assert code == 0, f"kafka-init exited {code}:\n{log}"
    lines = [line for line in (ROOT / "secure/acls.conf").read_text().splitlines()
             if line.startswith("--")]  # fmt: skip
    assert f"granted the {len(lines)} ACL lines of /etc/kafka/secure/acls.conf" in log, log


def test_each_app_logs_in_as_its_principal_and_works(stack: Stack) -> None:
    """Every replica's work counter moves, the seed's lines show, and both groups commit."""
    stack.wait(lambda: all(v > 0 for v in work_done(stack).values()), 180, "every app working")
    logs = stack.logs(*APPS)
    for service, line in SEED_LINES.items():
        replicas = {replica for replica, _, text in logs if line in text}
        assert replicas == {f"{service}-1", f"{service}-2"}, (service, replicas)
    stack.wait(lambda: all(sum(committed(g).values()) > 0 for g in GROUPS), 120, "commits")


def test_no_log_line_holds_a_password_or_a_scram_key(stack: Stack) -> None:
    text = stack.compose("logs", "--no-color", timeout=120)
    assert "Replayed UserScramCredentialRecord" in text  # the control: the brokers' logs are in
    assert text.count("new storage: formatting it with the SCRAM users") == 3, "one per broker"
    leaked = [p for p, secret in secrets.passwords(SECRETS).items() if secret in text]
    assert not leaked, f"passwords of {leaked} in the logs"
    assert "storedKey=" not in text and "serverKey=" not in text


def test_down_and_up_on_the_same_volumes_keeps_logins_acls_and_offsets(stack: Stack) -> None:
    offsets = {group: committed(group) for group in GROUPS}
    stack.compose("down", timeout=300)  # without --volumes: storage, users and secrets stay
    restarted_at = datetime.datetime.now(datetime.UTC)
    stack.compose("up", "--detach", *SERVICES, timeout=600)
    code, log = kafka_init_log(stack)  # a new container: its log is this start's
    assert code == 0 and "granted the " in log, log
    broker_logs = "\n".join(text for _, _, text in stack.logs(*BROKERS))
    assert "new storage: formatting it" not in broker_logs, "formatted again on restart"

    def moved_on() -> bool:
        now: dict[str, Any] = {group: committed(group) for group in GROUPS}
        return all(
            sum(now[group].values()) > sum(offsets[group].values()) for group in GROUPS
        ) and any(
            when > restarted_at and SEED_LINES["producer"] in text
            for _, when, text in stack.logs("producer")
        )

    took = stack.wait(moved_on, 240, "new deliveries and commits after down and up")
    stack.say(f"FIGURES compose-secure: working_again_after_up_s={took:.1f}")
