"""What one broker health probe costs, the old way and the new, on cores kept busy.

- old: kafka-broker-api-versions.sh, i.e. a JVM with the broker's KAFKA_HEAP_OPTS (512 MB)
  running Kafka's BrokerApiVersionsCommand;
- new: docker-compose.yml's healthcheck, an ApiVersions request sent by bash through /dev/tcp.

Both ask a broker of a cluster of its own (localcluster, another home and port offset). While
they run, one busy loop per core keeps the machine loaded, as a laptop running the whole stack
would be; the loops stop when the probes are done. Prints the probe times and a table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from localcluster import jars
from localcluster.cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def timed(command: list[str], timeout: float) -> tuple[float, int]:
    started = time.monotonic()
    try:
        code = subprocess.run(command, capture_output=True, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        code = -1
    return time.monotonic() - started, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=10, help="probes of each kind (default 10)")
    parser.add_argument("--port-offset", type=int, default=400, help="EXTERNAL port shift")
    parser.add_argument("--no-load", action="store_true", help="leave the cores idle")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-health-") as home:
        env = {
            **os.environ,
            "LOCALCLUSTER_HOME": home,
            "LOCALCLUSTER_PORT_OFFSET": str(args.port_offset),
        }
        cli = [sys.executable, "-m", "localcluster"]
        subprocess.run([*cli, "up"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        try:
            port = 9094 + args.port_offset
            compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
            test = compose["services"]["kafka-0"]["healthcheck"]["test"][1:]
            new = [
                a.replace("$$", "$").replace("/localhost/9092", f"/localhost/{port}") for a in test
            ]
            heap = compose["x-kafka-env"]["KAFKA_HEAP_OPTS"].split()
            lib = LocalCluster(say=lambda _: None).lib()  # resolved by `up`, in its cache
            old = [
                jars.require_java(), *heap, "-cp", f"{lib}/*",
                "org.apache.kafka.tools.BrokerApiVersionsCommand",
                "--bootstrap-server", f"localhost:{port}",
            ]  # fmt: skip
            load = [] if args.no_load else [
                multiprocessing.Process(target=spin, args=(3600,), daemon=True)
                for _ in range(os.cpu_count() or 2)
            ]  # fmt: skip
            for process in load:
                process.start()
            try:
                results = {}
                for name, command in (
                    ("old (JVM, 512 MB heap)", old),
                    ("new (bash /dev/tcp)", new),
                ):
                    times = []
                    for _ in range(args.probes):
                        seconds, code = timed(command, timeout=60)
                        if code != 0:
                            print(f"{name}: a probe failed ({code}) after {seconds:.2f} s")
                        times.append(seconds)
                    results[name] = times
                    print(f"{name}: " + ", ".join(f"{t:.3f}" for t in times))
            finally:
                for process in load:
                    process.terminate()
        finally:
            subprocess.run([*cli, "down", "--wipe"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)

    cores = "idle" if args.no_load else f"{os.cpu_count()} busy"
    print(f"\n| probe ({cores} cores) | probes | median | max | over 10 s (the timeout) |")
    print("|---|---|---|---|---|")
    for name, times in results.items():
        over = sum(t > 10 for t in times)
        median, longest = statistics.median(times), max(times)
        print(f"| {name} | {len(times)} | {median:.3f} s | {longest:.3f} s | {over} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
