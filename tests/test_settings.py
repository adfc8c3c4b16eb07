"""The scripts' settings and start-up, without a cluster: bad values exit 2 with one clear message,
client properties files are read as Java reads them, and no reachable broker is waited for.

Nothing here needs Kafka: a script that wants a broker is given localhost:1, where none listens.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from kafka_app import client_id
from kafka_app.client_health import ClientHealth
from kafka_app.client_id import default_client_id
from kafka_app.lifecycle import counted
from kafka_app.settings import ConfigError, connection, load_properties
from support.processes import ROOT, App, app_env, run_script

# --------------------------------------------------------------------------------------------
# Command line and environment: a bad value exits 2
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "args", "env"),
    [
        ("producer.py", ["--interval", "-1"], {}),
        ("producer.py", ["--interval", "soon"], {}),
        ("producer.py", ["--interval", "nan"], {}),
        ("producer.py", ["--count", "0"], {}),
        ("producer.py", [], {"PRODUCER_INTERVAL_SECONDS": "-2"}),
        ("producer.py", [], {"LOG_LEVEL": "loud"}),
        ("batch_message_consumer.py", ["--batch-size", "0"], {}),
        ("batch_message_consumer.py", [], {"BATCH_SIZE": "ten"}),
        ("batch_message_consumer.py", [], {"BATCH_WINDOW_SECONDS": "0"}),
        ("single_message_consumer.py", ["--idle-exit", "-5"], {}),
        ("single_message_consumer.py", ["--max-messages", "1.5"], {}),
        ("single_message_consumer.py", ["--no-such-flag"], {}),
    ],
)
def test_bad_values_exit_2_without_traceback(script: str, args: list[str], env: dict) -> None:
    result = run_script(script, *args, env=app_env("localhost:1", **env))
    assert result.returncode == 2, result.stderr
    # One line, as README.md promises: the usage block stays in --help.
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{script}: error: ") and line.endswith(" (see --help)"), line


@pytest.mark.parametrize(
    "script", ["producer.py", "batch_message_consumer.py", "single_message_consumer.py"]
)
def test_help_still_shows_the_usage(script: str) -> None:
    """Control for the one-line errors: the usage is still there when asked for."""
    result = run_script(script, "--help", env=app_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script} ") and "--client-id" in result.stdout


# --------------------------------------------------------------------------------------------
# Client properties files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script", ["producer.py", "batch_message_consumer.py", "single_message_consumer.py"]
)
def test_missing_client_properties_file_is_one_clear_line(script: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.properties"
    result = run_script(script, env=app_env(KAFKA_CLIENT_PROPERTIES=str(missing)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(missing) in lines[0] and "No such file" in lines[0]


@pytest.mark.parametrize(
    ("script", "properties", "expected"),
    [
        ("batch_message_consumer.py", "enable.auto.commit=true", "enable.auto.commit"),
        ("producer.py", "enable.idempotence=false", "enable.idempotence"),
        ("producer.py", "acks=1", "acks"),  # librdkafka: conflicts with idempotence
        ("single_message_consumer.py", "max.poll.records=10", "max.poll.records"),
        ("single_message_consumer.py", "no.such.property=1", "no.such.property"),
        # Java reads this line as the key "just", which librdkafka does not know.
        ("producer.py", "just some words", 'No such configuration property: "just"'),
    ],
)
def test_bad_client_properties_exit_2(
    script: str, properties: str, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "client.properties"
    path.write_text(f"# a comment\n{properties}\n")
    result = run_script(script, env=app_env("localhost:1", KAFKA_CLIENT_PROPERTIES=str(path)))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


CONFLUENT_STYLE = (
    "# Confluent Cloud style\n"
    "! also a comment\n"
    "\n"
    "bootstrap.servers=pkc-1.example.com:9092\n"
    "security.protocol = SASL_SSL\n"
    "sasl.mechanisms: PLAIN\n"
    "sasl.username=KEY\n"
    "sasl.password=p\\=ss\\\\word\\u0021\n"
    "ssl.endpoint.identification.algorithm=https\\\n"
    "   \n"
)
# Java's grammar, not a subset of it: white space separates a key from its value too.
SPACE_SEPARATED = "sasl.mechanism PLAIN\nsasl.username\tKEY\nkey\\ with\\ spaces = v\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            CONFLUENT_STYLE,
            {
                "bootstrap.servers": "pkc-1.example.com:9092",
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "PLAIN",
                "sasl.username": "KEY",
                "sasl.password": "p=ss\\word!",
                "ssl.endpoint.identification.algorithm": "https",
            },
        ),
        (
            SPACE_SEPARATED,
            {"sasl.mechanism": "PLAIN", "sasl.username": "KEY", "key with spaces": "v"},
        ),
    ],
    ids=["confluent-style", "space-separated"],
)
def test_load_properties_java_syntax(text: str, expected: dict, tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(text)
    assert load_properties(path) == expected


def test_java_only_property_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("# a comment\nlinger.ms=\\\n  5\n\nsasl.jaas.config=x\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:5: sasl.jaas.config is a"):
        load_properties(path)


def test_properties_file_bootstrap_is_used_unless_overridden(tmp_path: Path) -> None:
    import producer

    path = tmp_path / "client.properties"
    path.write_text("bootstrap.servers=from-file:9092\nlinger.ms=50\n")
    env = {"KAFKA_CLIENT_PROPERTIES": str(path)}
    with pytest.MonkeyPatch.context() as patch:
        for key in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPIC"):
            patch.delenv(key, raising=False)
        for key, value in env.items():
            patch.setenv(key, value)
        args = producer.parse_args([])
        assert connection(args.bootstrap_servers, args.client_properties) == (
            "from-file:9092",
            {"linger.ms": "50"},
        )
        patch.setenv("KAFKA_BOOTSTRAP_SERVERS", "from-env:9092")
        args = producer.parse_args([])
        assert connection(args.bootstrap_servers, args.client_properties)[0] == "from-env:9092"
        args = producer.parse_args(["--bootstrap-servers", "from-flag:9092"])
        assert connection(args.bootstrap_servers, args.client_properties)[0] == "from-flag:9092"


# --------------------------------------------------------------------------------------------
# No broker reachable: wait and say so, never crash
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_producer_without_brokers_waits_then_reports_undelivered(
    scripts: Callable[..., App],
) -> None:
    producer = scripts(
        "producer.py",
        "producer",
        "--interval",
        0.5,
        "--flush-timeout",
        1,
        env=app_env("localhost:1"),
    )
    time.sleep(3)
    assert producer.process.poll() is None, producer.log()
    producer.process.send_signal(signal.SIGTERM)
    assert producer.wait(20) == 1, producer.log()  # queued messages were never acknowledged
    log = producer.log()
    assert re.search(r"^WARNING:root:(No broker reachable|Kafka connection problem)", log, re.M)
    assert re.search(r"not delivered \(still queued\) [1-9]", log)
    assert "Traceback" not in log


# --------------------------------------------------------------------------------------------
# Log wording
# --------------------------------------------------------------------------------------------


def test_counted_reads_as_a_sentence() -> None:
    assert [counted(n, "message") for n in (0, 1, 2)] == ["0 messages", "1 message", "2 messages"]


def librdkafka_record(facility: str, text: str) -> logging.LogRecord:
    """A log record as confluent-kafka hands librdkafka's lines to a Python logger."""
    return logging.LogRecord(
        "librdkafka",
        logging.WARNING,
        "",
        0,
        "%s [%s] %s",
        (facility, "rdkafka#producer-1", text),
        None,
    )


def test_a_starting_clusters_producer_id_retry_is_explained_not_warned() -> None:
    [health] = ClientHealth().callbacks()["logger"].filters
    quiet = health.filter
    retry = librdkafka_record(
        "GETPID",
        "[thrd:main]: Failed to acquire idempotence PID from broker localhost:9095/1: Broker:"
        " Coordinator load in progress: retrying",
    )
    assert quiet(retry) and retry.levelno == logging.INFO
    assert retry.getMessage().startswith("Waiting for a producer ID: the cluster is still starting")
    # Controls: other GETPID trouble stays a warning; a connection failure line is dropped.
    other = librdkafka_record(
        "GETPID", "[thrd:main]: Failed to acquire idempotence PID: Broker: Not authorized"
    )
    assert quiet(other) and other.levelno == logging.WARNING
    assert not quiet(librdkafka_record("FAIL", "localhost:1/bootstrap: Connection refused"))


def test_a_protocol_mismatch_stops_the_client_once_it_repeats() -> None:
    now = [0.0]
    health = ClientHealth(clock=lambda: now[0])
    [watcher] = health.callbacks()["logger"].filters
    assert watcher is health  # the latest client health reads librdkafka's lines
    closed = librdkafka_record(
        "FAIL", "localhost:9394/bootstrap: Disconnected: connection closed by peer: receive 0"
        " after POLLIN (after 2ms in state APIVERSION_QUERY)",
    )  # fmt: skip
    refused = librdkafka_record("FAIL", "localhost:9094/bootstrap: Connection refused")
    for _ in range(50):  # a broker that is down: never a mismatch
        assert not health.filter(refused)
    assert health.refused is None
    for _ in range(30):  # a broker going down now and then, 20 s apart: never 10 in 15 s
        now[0] += 20.0
        assert not health.filter(closed)
    assert health.refused is None
    for n in range(10):  # a mismatch: every retry of every broker, 0.3 s apart
        now[0] += 0.3
        assert not health.filter(closed)
        assert (health.refused is None) == (n < 8), n  # 9 of them and the last slow one
    assert health.broken and "set KAFKA_SECURITY_PROTOCOL" in health.refused


def test_the_default_client_id_outside_compose_is_service_host_and_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica numbers come from Compose's DNS (tests/compose_live checks them); elsewhere the
    host and the process name the client, also when a project is named but its replica names
    do not resolve. Two producers started by hand then sign their messages apart."""
    me = f"producer-{socket.gethostname()}-{os.getpid()}"
    monkeypatch.setattr(client_id, "SEARCH_PAUSE_SECONDS", 0)
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", f"no-such-project-{uuid.uuid4().hex[:8]}")
    assert default_client_id("producer", tmp_path / "absent") == me
    marker = tmp_path / ".dockerenv"
    marker.touch()
    assert default_client_id("producer", marker) == me
    ask = [
        sys.executable,
        "-c",
        "from kafka_app.client_id import default_client_id as d; print(d('p'))",
    ]
    two = {
        subprocess.run(ask, capture_output=True, text=True, check=True, cwd=ROOT).stdout
        for _ in "ab"
    }
    assert len(two) == 2, two


def test_a_replica_whose_sibling_does_not_resolve_yet_searches_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica 2 starting before replica 1 is in Docker's DNS: the first search ends at 1."""
    addresses = {"me": "10.0.0.3", "demo-producer-1": "10.0.0.2", "demo-producer-2": "10.0.0.3"}
    searches = []

    def resolve(name: str) -> str:
        if name == "me":
            searches.append(name)
        if name == "demo-producer-1" and len(searches) < 2:
            raise socket.gaierror("not yet")  # the sibling is not running yet
        return addresses[name]

    monkeypatch.setattr(socket, "gethostname", lambda: "me")
    monkeypatch.setattr(socket, "gethostbyname", resolve)
    monkeypatch.setattr(client_id, "SEARCH_PAUSE_SECONDS", 0)
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "demo")
    (marker := tmp_path / ".dockerenv").touch()
    assert default_client_id("producer", marker) == "producer-2"
    assert len(searches) == 2  # the control: the first search did not find it


def test_the_security_variables_are_librdkafka_settings(tmp_path: Path) -> None:
    from kafka_app.settings import security_settings

    secret = tmp_path / "producer.password"
    secret.write_text("s3cret\n")
    environ = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "producer",
        "KAFKA_SASL_PASSWORD_FILE": str(secret),
        "KAFKA_SSL_CA_LOCATION": "/etc/kafka/secrets/ca.pem",
        "KAFKA_TOPIC": "not a security setting",
    }
    assert security_settings(environ) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "producer",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/kafka/secrets/ca.pem",
    }
    assert security_settings({}) == {}
    with pytest.raises(ConfigError, match="not both"):
        security_settings({**environ, "KAFKA_SASL_PASSWORD": "other"})
    with pytest.raises(ConfigError, match=r"cannot read KAFKA_SASL_PASSWORD_FILE .*missing"):
        security_settings({"KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")})


def test_a_properties_file_wins_over_the_security_variables(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "from-env")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    path = tmp_path / "client.properties"
    path.write_text("sasl.username=from-file\n")
    _, properties = connection(None, str(path))
    assert properties == {"sasl.username": "from-file", "security.protocol": "SASL_SSL"}


def test_an_unreadable_password_file_exits_2_in_one_line(tmp_path: Path) -> None:
    env = app_env(KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "missing.password"))
    result = run_script("producer.py", "--count", "1", env=env)
    assert result.returncode == 2, result.stderr
    assert "cannot read KAFKA_SASL_PASSWORD_FILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_only_refusals_that_cannot_heal_stop_a_client() -> None:
    from confluent_kafka import KafkaError

    from kafka_app.refusals import refusal

    wrong = KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: Authentication"
                       " failed during authentication due to invalid credentials")  # fmt: skip
    assert "refused the login of producer" in refusal(wrong, "producer")
    untrusted = KafkaError(KafkaError._SSL, "SSL handshake failed: certificate verify failed")
    assert "cannot be trusted" in refusal(untrusted, "producer")
    # A broker going down in the middle of a login or a handshake: librdkafka reconnects.
    lost = "SASL authentication error: SaslAuthenticateRequest failed: Local: Broker transport"
    cut = KafkaError(KafkaError._AUTHENTICATION, lost + " failure")
    assert refusal(cut, "producer") is None
    reset = KafkaError(KafkaError._SSL, "SSL handshake failed: Disconnected: connection reset")
    assert refusal(reset, "producer") is None
    denied = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    line = refusal(denied, "producer", operation="Read", topic="t")
    assert line.startswith("producer may not Read topic t: ") and "--topic t" in line
