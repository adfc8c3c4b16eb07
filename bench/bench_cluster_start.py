"""How long `python -m localcluster up` takes until final-1-topic is ready (jars cached).

Measures two cases, each as the median of several runs of the real command:
- fresh: after `down --wipe` (storage formatted, topic and __consumer_offsets created);
- restart: after `down`, with the data kept.
Runs on its own cluster home and port offset, so it leaves a developer's cluster alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def localcluster(env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "localcluster", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per case (default 5)")
    parser.add_argument("--port-offset", type=int, default=300, help="EXTERNAL port shift")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as home:
        env = {
            **os.environ,
            "LOCALCLUSTER_HOME": home,
            "LOCALCLUSTER_PORT_OFFSET": str(args.port_offset),
        }
        localcluster(env, "jars")
        fresh, restart = [], []
        try:
            for run in range(args.runs):
                localcluster(env, "down", "--wipe")
                fresh.append(localcluster(env, "up"))
                localcluster(env, "down")
                restart.append(localcluster(env, "up"))
                print(f"run {run + 1}: fresh {fresh[-1]:.1f}s, restart {restart[-1]:.1f}s")
        finally:
            localcluster(env, "down", "--wipe")

    print()
    print("| case | runs | median | min | max |")
    print("|---|---|---|---|---|")
    for name, times in (("fresh (format + create topic)", fresh), ("restart (data kept)", restart)):
        print(
            f"| {name} | {len(times)} | {statistics.median(times):.1f} s"
            f" | {min(times):.1f} s | {max(times):.1f} s |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
