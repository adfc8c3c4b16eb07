"""`make demo`: what `docker compose up` does, with local processes instead of containers.

The cluster comes up first, then every service built from our Dockerfile runs with its
`replicas` count, its environment (``kafka-N:9092`` rewritten to the local cluster's ports) and
its output prefixed the way Compose prefixes it: ``producer-1  | Message delivered to ...``,
coloured per service on a terminal, and KAFKA_CLIENT_ID set to that replica name. Each
replica serves its metrics and probes on a loopback port of its own (localcluster/metrics_ports),
printed once at start.
A replica that exits is started again as its ``restart:`` policy says (the apps exit with
status 3 when their Kafka client is stuck, counting on that). Ctrl-C (or SIGTERM) stops the
apps with SIGTERM, then the cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from localcluster import metrics_ports
from localcluster.cluster import ROOT, LocalCluster
from localcluster.compose import AppService, host_paths
from localcluster.nodes import LOOPBACK

STOP_TIMEOUT = 30.0
# Docker waits before each restart, twice as long each time up to a minute, and starts over once
# a container has run for 10 s. The same here, from 1 s (Docker starts from 100 ms).
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0
RAN_LONG_ENOUGH = 10.0
# Docker Compose's log prefix colours (ANSI SGR codes), given to the services in turn.
PALETTE = ("36", "33", "32", "35", "34", "36;1", "33;1", "32;1", "35;1", "34;1")


def use_colour(stream: TextIO) -> bool:
    """Colour on a terminal only, and never with NO_COLOR set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def coloured(text: str, service_index: int) -> str:
    return f"\033[{PALETTE[service_index % len(PALETTE)]}m{text}\033[0m"


@dataclass
class Replica:
    """One replica of an app service: its current process, and how it was restarted so far."""

    app: AppService
    name: str
    prefix: str  # of its output lines: its name, padded, and "|"
    process: subprocess.Popen
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0
    delay: float = 0.0  # before the next restart
    restart_at: float | None = None  # set while a restart is pending


def _pump(prefix: str, process: subprocess.Popen, lock: threading.Lock) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        with lock:
            sys.stdout.write(f"{prefix} {line}")
            sys.stdout.flush()


class Apps:
    """The app replicas of docker-compose.yml as local processes, restarted per their policy."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.services = [app for app in cluster.model.apps if self._present(app)]
        self.metrics_ports = metrics_ports.plan(self.services, cluster.port_offset)
        self.replicas: list[Replica] = []
        self.pumps: list[threading.Thread] = []
        self.lock = threading.Lock()

    def _present(self, app: AppService) -> bool:
        script = next((part for part in app.command if part.endswith(".py")), None)
        if script and not (ROOT / script).exists():
            self.cluster.say(f"skipping {app.service}: {script} does not exist yet")
            return False
        return True

    def start(self) -> None:
        wanted = [  # app, replica name, the service's colour
            (app, f"{app.service}-{i}", service)
            for service, app in enumerate(self.services)
            for i in range(1, app.replicas + 1)
        ]
        width = max((len(name) for _, name, _ in wanted), default=0)
        colour = use_colour(sys.stdout)
        for app, name, service in wanted:
            prefix = f"{name:<{width}} |"
            prefix = coloured(prefix, service) if colour else prefix
            self.replicas.append(Replica(app, name, prefix, self._run(app, name, prefix)))

    def _run(self, app: AppService, name: str, prefix: str) -> subprocess.Popen:
        """Start one process of `app`, its output printed after `prefix`."""
        command = [sys.executable if part == "python" else part for part in app.command]
        # Replicas share this host, where containers each had their own: the replica name tells
        # their Kafka clients apart. A client id the compose file sets wins, as in Docker.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "KAFKA_CLIENT_ID": name}
        localize = self.cluster.localize
        env.update({k: host_paths(localize(v), app.mounts) for k, v in app.environment.items()})
        env.update(metrics_ports.environment(self.metrics_ports, name))
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # A process group of its own, as a container is: a terminal's Ctrl-C reaches the
            # demo alone, which then stops each app with one SIGTERM (a second would abort it).
            process_group=0,
        )
        pump = threading.Thread(target=_pump, args=(prefix, process, self.lock), daemon=True)
        pump.start()
        self.pumps.append(pump)
        return process

    def supervise(self) -> bool:
        """Restart replicas that exited, as their restart policy says; False once none runs
        and none will be restarted."""
        now = time.monotonic()
        for replica in self.replicas:
            code = replica.process.poll()
            if code is None:
                continue
            if replica.restart_at is None:
                if not replica.app.restarts_after(code, replica.restarts):
                    continue
                ran = now - replica.started_at
                replica.delay = (
                    FIRST_RESTART_DELAY
                    if ran >= RAN_LONG_ENOUGH or not replica.delay
                    else min(replica.delay * 2, MAX_RESTART_DELAY)
                )
                replica.restart_at = now + replica.delay
                self.cluster.say(
                    f"{replica.name} exited with {code}; restarting it in {replica.delay:g} s"
                    f" (restart: {replica.app.restart})"
                )
            elif now >= replica.restart_at:
                replica.process = self._run(replica.app, replica.name, replica.prefix)
                replica.started_at, replica.restart_at = now, None
                replica.restarts += 1
        return any(r.process.poll() is None or r.restart_at is not None for r in self.replicas)

    def signal(self, signum: int) -> None:
        for replica in self.replicas:
            if replica.process.poll() is None:
                replica.process.send_signal(signum)

    def stop(self) -> list[str]:
        """SIGTERM every replica, as `docker compose down` does; return what did not exit 0."""
        self.signal(signal.SIGTERM)
        failed = []
        for replica in self.replicas:
            try:
                code = replica.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                code = replica.process.wait()
            if code != 0:
                failed.append(f"{replica.name} exited with {code}")
        for pump in self.pumps:
            pump.join(timeout=5)
        return failed


def address_lines(cluster: LocalCluster) -> list[str]:
    """Which address is whose: the apps get the internal listeners, as in Compose, while scripts
    and tools on this machine use the EXTERNAL ones."""
    internal = ",".join(
        f"{ad.host}:{ad.port}"
        for node in cluster.nodes
        for ad in node.broker.advertised()
        if ad.host not in ("localhost", LOOPBACK)
    )
    hint = ': `eval "$(python -m localcluster env)"` exports it' if cluster.port_offset else ""
    return [
        f"the apps connect to the internal listeners {cluster.localize(internal)}"
        f" (what {internal} means in Compose)",
        f"your own scripts and tools use the EXTERNAL bootstrap {cluster.bootstrap}{hint}",
    ]


def run_demo(cluster: LocalCluster, keep_cluster: bool = False) -> int:
    stop = threading.Event()
    apps = Apps(cluster)

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():  # again while the apps stop: theirs ends them at once
            apps.signal(signal.SIGTERM)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    metrics_ports.check_free(cluster, apps.metrics_ports)
    cluster.up()
    for line in address_lines(cluster) + metrics_ports.lines(apps.metrics_ports):
        cluster.say(line)
    apps.start()
    if not apps.replicas:
        cluster.say("no app scripts yet: the cluster is up, Ctrl-C stops it")

    while not stop.wait(0.5):
        if apps.replicas and not apps.supervise():
            cluster.say("every app exited")
            break

    cluster.say("stopping apps (SIGTERM); Ctrl-C again stops them at once")
    failed = apps.stop()
    if failed:
        cluster.say("; ".join(failed))
    if not keep_cluster:
        cluster.down()
    return 1 if failed else 0
