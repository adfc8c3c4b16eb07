"""The app services' healthcheck in docker-compose.yml, run against the real endpoint
(kafka_app/probes on loopback, with checks that pass or fail on demand). No Kafka: these are
fast."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from kafka_app import probe_check, probes

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
