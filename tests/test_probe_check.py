"""The app services' healthcheck in docker-compose.yml, run against the real endpoint
(kafka_app/probes on loopback, with checks that pass or fail on demand), and `make demo`'s
metrics port per replica (localcluster/metrics_ports). No Kafka: these are fast."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from kafka_app import probe_check, probes
from localcluster.cluster import LocalCluster
from localcluster.compose import AppService, load
from localcluster.errors import ClusterError
from localcluster.metrics_ports import check_free, environment, lines, plan

ROOT = Path(__file__).resolve().parent.parent
APPS = ["producer", "batch-consumer", "single-consumer"]


def test_every_app_service_probes_both_endpoints_on_an_unpublished_9100() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in APPS:
        service = services[name]
        assert service["environment"]["METRICS_PORT"] == 9100, name
        assert "ports" not in service and "expose" not in service, name
        test = service["healthcheck"]["test"]
        assert test == ["CMD", "python", "-m", "kafka_app.probe_check", "/healthz", "/readyz"]


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """The real endpoint on a free loopback port, METRICS_PORT set to it; its checks answer
    what the returned dict says (None: ok)."""
    says: dict[str, str | None] = {"live": None, "ready": None}
    port = probes.serve("127.0.0.1", 0, [], lambda: says["live"], lambda: says["ready"])
    monkeypatch.setenv("METRICS_PORT", str(port))
    return says


def test_healthy_when_both_answer_200(endpoint, capsys: pytest.CaptureFixture[str]) -> None:
    assert probe_check.main([]) == 0
    assert capsys.readouterr().out == "/healthz: ok\n/readyz: ok\n"


def test_not_ready_is_unhealthy_and_says_why(endpoint, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint["ready"] = "no partitions assigned (group state wait-join)"
    assert probe_check.main([]) == 1
    said = capsys.readouterr().out
    assert said == "/healthz: ok\n/readyz: 503 no partitions assigned (group state wait-join)\n"


def test_a_stuck_loop_is_unhealthy_though_ready(endpoint, capsys) -> None:
    endpoint["live"] = "the main loop has not turned for 61 s (bound 60 s)"
    assert probe_check.main(["/healthz"]) == 1
    assert "/healthz: 503 the main loop has not turned" in capsys.readouterr().out


def test_no_endpoint_is_unhealthy(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    with socket.socket() as unused:  # a port nothing listens on: bound, never listening
        unused.bind(("127.0.0.1", 0))
        monkeypatch.setenv("METRICS_PORT", str(unused.getsockname()[1]))
        assert probe_check.main([]) == 1
    assert "/readyz: no answer: " in capsys.readouterr().out
    monkeypatch.delenv("METRICS_PORT")
    assert probe_check.main([]) == 1


def test_demo_numbers_replicas_from_the_compose_port_shifted_by_the_offset() -> None:
    apps = [
        *load(ROOT / "docker-compose.yml").apps,
        AppService("any-port", ["python", "x.py"], 1, {"METRICS_PORT": "0"}),
        AppService("no-port", ["python", "x.py"], 2),
    ]
    ports = plan(apps, 600)
    replicas = [f"{service}-{n}" for service in APPS for n in (1, 2)]
    assert ports == {replica: 9701 + i for i, replica in enumerate(replicas)}
    assert environment(ports, "batch-consumer-2") == {
        "METRICS_PORT": "9704",
        "METRICS_ADDRESS": "127.0.0.1",
    }
    assert environment(ports, "no-port-1") == {}
    shown = lines(ports)
    assert len(shown) == 1 + len(ports)
    assert shown[1].split() == [
        "producer-1",
        "http://127.0.0.1:9701/metrics",
        "(/healthz,",
        "/readyz)",
    ]


def test_demo_refuses_a_busy_metrics_port_before_starting(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOCALCLUSTER_HOME", str(tmp_path / "home"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = LocalCluster(say=lambda _: None)
        with pytest.raises(ClusterError, match=rf"port {port} \(producer-2's metrics\) is already"):
            check_free(cluster, {"producer-2": port})
