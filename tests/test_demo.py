"""`make demo` (python -m localcluster demo) on the session's cluster: every app replica shows
the seed's log lines, a replica that exits is restarted as its restart policy says, and
SIGTERM stops everything cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from localcluster.compose import AppService, load
from localcluster.demo import PALETTE, coloured, use_colour
from localcluster.errors import ClusterError
from support.metrics import WORK_COUNTERS, working
from support.processes import APP_SETTINGS

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parent.parent

# Exits with status 3 (a stuck Kafka client's status) on its first run; waits for SIGTERM on
# the second, and then exits 0.
FLAKY_APP = """
import pathlib, signal, sys
ran_before = pathlib.Path(sys.argv[1])
if not ran_before.exists():
    ran_before.touch()
    print("first run: exiting with 3", flush=True)
    sys.exit(3)
print("second run", flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.pause()
"""


@pytest.mark.parametrize(
    ("policy", "exit_code", "restarts_so_far", "restarted"),
    [
        ("unless-stopped", 3, 5, True),
        ("unless-stopped", 0, 0, True),
        ("always", 1, 0, True),
        ("no", 3, 0, False),
        ("on-failure", 0, 0, False),
        ("on-failure", 3, 9, True),
        ("on-failure:2", 3, 1, True),
        ("on-failure:2", 3, 2, False),
    ],
)
def test_restart_policy_as_docker_applies_it(
    policy: str, exit_code: int, restarts_so_far: int, restarted: bool
) -> None:
    app = AppService("app", ["python", "app.py"], 1, restart=policy)
    assert app.restarts_after(exit_code, restarts_so_far) is restarted


def test_every_app_service_restarts_unless_stopped() -> None:
    """The scripts exit with status 3 when their Kafka client is stuck, for a restart."""
    apps = load(ROOT / "docker-compose.yml").apps
    assert {app.service: app.restart for app in apps} == {
        "producer": "unless-stopped",
        "batch-consumer": "unless-stopped",
        "single-consumer": "unless-stopped",
    }


def compose_with_producer_restart(tmp_path: Path, policy: object) -> Path:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    document["services"]["producer"]["restart"] = policy
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_unknown_restart_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="unknown restart policy 'sometimes'"):
        load(compose_with_producer_restart(tmp_path, "sometimes"))


def test_bare_no_policy_read_by_yaml_as_false_means_no(tmp_path: Path) -> None:
    apps = load(compose_with_producer_restart(tmp_path, False)).apps
    assert next(app for app in apps if app.service == "producer").restart == "no"


class Output:
    """The demo's merged output, read line by line in a thread."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def has(self, prefix: str, text: str) -> bool:
        return any(line.startswith(prefix) and text in line for line in list(self.lines))

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.lines[-count:])


def start_demo(document: dict, tmp_path: Path, **settings: str) -> subprocess.Popen:
    """`demo --keep-cluster` on the compose `document`, its output (stderr too) in a pipe; the
    app settings of this environment and NO_COLOR left out, `settings` added."""
    compose_file = tmp_path / "docker-compose.yml"
    compose_file.write_text(yaml.safe_dump(document, sort_keys=False))  # services in order
    env = {k: v for k, v in os.environ.items() if not k.startswith((*APP_SETTINGS, "NO_COLOR"))}
    env.update(LOCALCLUSTER_COMPOSE_FILE=str(compose_file), **settings)
    return subprocess.Popen(
        [sys.executable, "-m", "localcluster", "demo", "--keep-cluster"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a process group of its own, as in a terminal
    )


def stop_demo(demo: subprocess.Popen) -> None:
    """After a failure: SIGTERM, for the demo to stop its apps (a SIGKILL would orphan them,
    each in a process group of its own, holding their metrics ports), then SIGKILL."""
    if demo.poll() is None:
        demo.terminate()
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()


@pytest.mark.timeout(240)
def test_demo_shows_the_seed_log_lines_and_restarts_an_app_that_exits(
    kafka_cluster, tmp_path: Path
) -> None:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    document["services"]["flaky"] = {
        "build": ".",
        "restart": "unless-stopped",
        "command": ["python", "-c", FLAKY_APP, str(tmp_path / "ran-before")],
    }
    demo = start_demo(
        document,
        tmp_path,
        PRODUCER_INTERVAL_SECONDS="0.2",  # the demo's pace, faster: every line shows sooner
        BATCH_WINDOW_SECONDS="2",
    )
    output = Output(demo)
    expected = [  # (a line starting with, and containing)
        *((f"producer-{i} ", "Message delivered to final-1-topic [") for i in (1, 2)),
        *(
            (f"batch-consumer-{i} ", "INFO:root:BatchConsumer received: Test message ")
            for i in (1, 2)
        ),
        *(
            (f"single-consumer-{i} ", "INFO:root:SingleConsumer received: Test message ")
            for i in (1, 2)
        ),
        ("flaky-1 ", "first run: exiting with 3"),
        ("", "flaky-1 exited with 3; restarting it in 1 s (restart: unless-stopped)"),
        ("flaky-1 ", "second run"),
    ]

    def missing() -> list[tuple[str, str]]:
        return [(prefix, text) for prefix, text in expected if not output.has(prefix, text)]

    try:
        deadline = time.monotonic() + 150
        while missing() and demo.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not missing(), f"no line for {missing()}; the output ends with:\n{output.tail()}"
        check_metrics_ports(output, kafka_cluster.local.port_offset)
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it: to the group
        code = demo.wait(timeout=90)
    finally:
        stop_demo(demo)
    # Each app got one signal, the demo's SIGTERM, and stopped in order (exit 0): had the
    # terminal's SIGINT reached them too, that SIGTERM would have been a second, aborting one.
    assert code == 0, output.tail()
    assert output.has("", "stopping apps (SIGTERM)")
    assert not output.has("", "exiting at once"), output.tail()


# "  producer-1        http://127.0.0.1:9101/metrics  (/healthz, /readyz)"
METRICS_LINE = re.compile(r"^  (\S+) +http://127\.0\.0\.1:(\d+)/metrics  \(/healthz, /readyz\)$")


def check_metrics_ports(output: Output, offset: int) -> None:
    """Each replica serving metrics got a port of its own, 9101 on, shifted by the offset (the
    flaky app sets no METRICS_PORT), printed once; each answers there, working, within 60 s."""
    ports = {m[1]: int(m[2]) for line in output.lines if (m := METRICS_LINE.match(line))}
    replicas = [f"{service}-{n}" for service in WORK_COUNTERS for n in (1, 2)]  # in file order
    assert ports == {r: 9101 + i + offset for i, r in enumerate(replicas)}, output.tail(80)
    assert sum("metrics and probes of each replica" in line for line in output.lines) == 1
    deadline = time.monotonic() + 60
    for replica, port in ports.items():
        while (problem := working(replica, f"http://127.0.0.1:{port}")) is not None:
            assert time.monotonic() < deadline, problem
            time.sleep(0.5)


def test_prefix_colours_cycle_compose_palette_per_service() -> None:
    assert coloured("producer-1 |", 0) == "\033[36mproducer-1 |\033[0m"
    assert coloured("x |", 1) == "\033[33mx |\033[0m"
    assert coloured("x |", 5) == "\033[36;1mx |\033[0m"
    assert coloured("x |", len(PALETTE)) == coloured("x |", 0)


def test_colour_only_on_a_terminal_without_no_color(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal, (tmp_path / "out").open("w") as file:
        assert use_colour(terminal)
        assert not use_colour(file)
        monkeypatch.setenv("NO_COLOR", "1")
        assert not use_colour(terminal)
    os.close(leader)


# Prints the client id and bootstrap servers it was given, then exits 0.
ENV_APP = """
import os
print("client id", os.environ.get("KAFKA_CLIENT_ID"), "at", os.environ["KAFKA_BOOTSTRAP_SERVERS"])
"""


@pytest.mark.timeout(120)
def test_demo_names_each_replica_and_says_which_address_is_whose(
    kafka_cluster, tmp_path: Path
) -> None:
    """Two replicas of a fake app that exit at once, so the demo ends by itself; its output is
    a pipe here, so no colour."""
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    apps = [name for name, service in document["services"].items()
            if service.get("image") == "kafka-python-demo-app"]  # fmt: skip
    for name in apps:
        del document["services"][name]
    document["services"]["env-app"] = {
        "build": ".",
        "restart": "no",
        "deploy": {"replicas": 2},
        "environment": {"KAFKA_BOOTSTRAP_SERVERS": "kafka-0:9092,kafka-1:9092,kafka-2:9092"},
        "command": ["python", "-c", ENV_APP],
    }
    demo = start_demo(document, tmp_path)
    try:
        out, _ = demo.communicate(timeout=100)
    finally:
        stop_demo(demo)
    assert demo.returncode == 0, out
    internal = re.search(r"the apps connect to the internal listeners (\S+) \(what ", out)
    assert internal, out
    assert internal[1].count("127.0.0.1:") == 3, internal[1]
    for replica in ("env-app-1", "env-app-2"):
        assert f"{replica} | client id {replica} at {internal[1]}\n" in out, out
    external = f"your own scripts and tools use the EXTERNAL bootstrap {kafka_cluster.bootstrap}"
    assert external in out, out
    hint = '`eval "$(python -m localcluster env)"`'
    assert (hint in out) == (kafka_cluster.local.port_offset != 0), out
    assert "\033[" not in out, "colour codes in a pipe"
