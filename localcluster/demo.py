"""`make demo`: what `docker compose up` does, with local processes instead of containers.

The cluster comes up first, then every service built from our Dockerfile runs with its
`replicas` count, its environment (``kafka-N:9092`` rewritten to the local cluster's ports) and
its output prefixed the way Compose prefixes it: ``producer-1  | Message delivered to ...``.
Ctrl-C (or SIGTERM) stops the apps with SIGTERM, then the cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from localcluster.cluster import ROOT, LocalCluster

STOP_TIMEOUT = 30.0


@dataclass
class Replica:
    name: str
    process: subprocess.Popen


def _pump(replica: Replica, width: int, lock: threading.Lock) -> None:
    assert replica.process.stdout is not None
    for line in replica.process.stdout:
        with lock:
            sys.stdout.write(f"{replica.name:<{width}} | {line}")
            sys.stdout.flush()


def _start_apps(cluster: LocalCluster) -> list[Replica]:
    replicas = []
    for app in cluster.model.apps:
        command = [sys.executable if part == "python" else part for part in app.command]
        script = next((part for part in command if part.endswith(".py")), None)
        if script and not (ROOT / script).exists():
            cluster.say(f"skipping {app.service}: {script} does not exist yet")
            continue
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.update({key: cluster.localize(value) for key, value in app.environment.items()})
        for index in range(1, app.replicas + 1):
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            replicas.append(Replica(f"{app.service}-{index}", process))
    return replicas


def run_demo(cluster: LocalCluster, keep_cluster: bool = False) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    cluster.up()
    replicas = _start_apps(cluster)
    if not replicas:
        cluster.say("no app scripts yet: the cluster is up, Ctrl-C stops it")
    width = max((len(r.name) for r in replicas), default=0)
    lock = threading.Lock()
    pumps = [threading.Thread(target=_pump, args=(r, width, lock), daemon=True) for r in replicas]
    for pump in pumps:
        pump.start()

    while not stop.wait(0.5):
        if replicas and all(r.process.poll() is not None for r in replicas):
            cluster.say("every app exited")
            break

    cluster.say("stopping apps (SIGTERM)")
    for replica in replicas:
        if replica.process.poll() is None:
            replica.process.send_signal(signal.SIGTERM)
    failed = []
    for replica in replicas:
        try:
            code = replica.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            replica.process.kill()
            code = replica.process.wait()
        if code != 0:
            failed.append(f"{replica.name} exited with {code}")
    for pump in pumps:
        pump.join(timeout=5)
    if failed:
        cluster.say("; ".join(failed))
    if not keep_cluster:
        cluster.down()
    return 1 if failed else 0
