"""The brokers' healthcheck of docker-compose.yml, run as Docker runs it, against a real broker.

The probe is a bash script that speaks the Kafka protocol (an ApiVersions request) without a
JVM. Here it runs against the session cluster, with the INTERNAL port it targets in Docker
(9092) replaced by a local broker's port, and against two controls: a closed port, and a
server that answers, but not as Kafka does.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest
import yaml

from compose_live.stack import COMPOSE_FILE


def probe_command(port: int) -> list[str]:
    """The healthcheck's command of kafka-0, aimed at `port`, after Compose's `$$` unescaping."""
    test = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["kafka-0"]["healthcheck"]["test"]
    assert test[0] == "CMD", test
    return [
        arg.replace("$$", "$").replace("/localhost/9092", f"/localhost/{port}") for arg in test[1:]
    ]


def run_probe(port: int) -> int:
    return subprocess.run(probe_command(port), capture_output=True, timeout=15).returncode


@pytest.mark.cluster
def test_probe_passes_against_every_broker(bootstrap_servers: str) -> None:
    for address in bootstrap_servers.split(","):
        port = int(address.rpartition(":")[2])
        assert run_probe(port) == 0, f"the healthcheck failed against the broker at {address}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def not_kafka() -> Iterator[int]:
    """A server on loopback that reads a request and answers 10 bytes that are not Kafka's."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def answer() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.recv(64)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    thread.join(timeout=10)


def test_probe_fails_on_a_closed_port() -> None:
    assert run_probe(free_port()) != 0


def test_probe_fails_against_a_server_that_is_not_kafka(not_kafka: int) -> None:
    assert run_probe(not_kafka) != 0
